"""Calls a running aigw gateway with the real OpenAI Python SDK on the Responses API,
embeddings and legacy completions.

Usage: responses_check.py <base url> <key>
Prints one JSON object per line: {"case": ..., ...}. The Rust end-to-end test
(tests/e2e/tests/responses.rs) runs it with the project venv's python and asserts on it
and on what the mock providers received.
"""
import json
import sys

import openai

base, key = sys.argv[1:3]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL = {"x-mock-tool-call": 'get_weather {"city":"Paris"}'}
PROMPT = "Mail jane.doe@example.com about it."


def report(case, **fields):
    print(json.dumps({"case": case, **fields}), flush=True)


def summary(response):
    calls = [
        {"name": item.name, "arguments": item.arguments, "call_id": item.call_id}
        for item in response.output
        if item.type == "function_call"
    ]
    usage = response.usage
    return {
        "status": response.status,
        "text": response.output_text,
        "calls": calls,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
    }


def error(err):
    return {"class": type(err).__name__, "status": err.status_code, "code": getattr(err, "code", None),
            "param": getattr(err, "param", None)}


for model in ("gpt-4o-mini", "claude-sonnet-4-5"):
    response = client.responses.create(model=model, instructions="Be brief.", input=PROMPT)
    report("create-" + model, **summary(response))

    response = client.responses.create(
        model=model,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}],
        tools=[TOOL],
        extra_headers=CALL,
    )
    report("create-tool-" + model, **summary(response))

    deltas = []
    arguments = []
    kinds = []
    with client.responses.stream(model=model, instructions="Be brief.", input=PROMPT, tools=[TOOL],
                                 extra_headers=CALL) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.function_call_arguments.delta":
                arguments.append(event.delta)
        final = stream.get_final_response()
    report("stream-" + model, deltas="".join(deltas), arguments="".join(arguments), first=kinds[0], last=kinds[-1],
           **summary(final))

# Stateful features a chat backend cannot serve: refused by name.
try:
    client.responses.create(model="claude-sonnet-4-5", input="hi", previous_response_id="resp_123")
    report("claude-previous-response", ok=False)
except openai.BadRequestError as err:
    report("claude-previous-response", **error(err))
try:
    client.responses.create(model="claude-sonnet-4-5", input="hi", tools=[{"type": "web_search"}])
    report("claude-web-search", ok=False)
except openai.BadRequestError as err:
    report("claude-web-search", **error(err))

# A provider's 429 reaches the SDK as RateLimitError, on every dialect.
try:
    client.responses.create(model="gpt-4o-mini", input="hi", extra_headers={"x-mock-status": "429"})
    report("responses-429", ok=False)
except openai.RateLimitError as err:
    report("responses-429", **error(err))
try:
    client.responses.create(model="claude-sonnet-4-5", input="hi", extra_headers={"x-mock-status": "429"})
    report("claude-responses-429", ok=False)
except openai.RateLimitError as err:
    report("claude-responses-429", **error(err))
try:
    client.embeddings.create(model="text-embedding-3-small", input="hi", extra_headers={"x-mock-status": "429"})
    report("embeddings-429", ok=False)
except openai.RateLimitError as err:
    report("embeddings-429", **error(err))

embeddings = client.embeddings.create(model="text-embedding-3-small", input=["My SSN is 123-45-6789.", "hello"])
report("embeddings", count=len(embeddings.data), dimensions=len(embeddings.data[0].embedding),
       prompt_tokens=embeddings.usage.prompt_tokens)

completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, max_tokens=20)
report("completions", text=completion.choices[0].text, prompt_tokens=completion.usage.prompt_tokens,
       finish_reason=completion.choices[0].finish_reason)
text = "".join(
    chunk.choices[0].text
    for chunk in client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, stream=True,
                                           extra_headers={"x-mock-split": "7"})
    if chunk.choices
)
report("completions-stream", text=text)

"""Calls a running aigw gateway with the real Anthropic Python SDK, as Claude Code would.

Usage: anthropic_check.py <base url> <wealth key> <retail key>
Prints one JSON object per line: {"case": ..., ...}. The Rust end-to-end test
(tests/e2e/tests/anthropic.rs) runs it with the project venv's python (`just sdk-tools`) and asserts on
the output and on what the mock providers received.
"""
import json
import sys

import anthropic

base, wealth_key, retail_key = sys.argv[1:4]

TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
TOOL_CALL = {"x-mock-tool-call": 'get_weather {"city": "Paris"}'}


def report(case, **fields):
    print(json.dumps({"case": case, **fields}), flush=True)


def blocks(message):
    out = []
    for block in message.content:
        if block.type == "text":
            out.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            out.append({"type": "tool_use", "name": block.name, "input": block.input, "id_set": bool(block.id)})
    return out


def usage(message):
    return {"input_tokens": message.usage.input_tokens, "output_tokens": message.usage.output_tokens}


client = anthropic.Anthropic(base_url=base, api_key=wealth_key, max_retries=0)
conversation = [
    {"role": "user", "content": "What is the weather in Paris?"},
]

for model in ("claude-sonnet-4-5", "gpt-4o-mini"):
    # JSON, with tools: the mock answers with its echo and a tool call.
    message = client.messages.create(
        model=model,
        max_tokens=64,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=conversation,
        tools=TOOLS,
        metadata={"user_id": "user-42"},
        stop_sequences=["STOP"],
        extra_headers=TOOL_CALL,
    )
    report(
        "json-" + model,
        type=message.type,
        role=message.role,
        blocks=blocks(message),
        stop_reason=message.stop_reason,
        usage=usage(message),
        request_id=message._request_id,
    )

    # Streaming with tools, through the SDK's stream helper (it checks the event order).
    with client.messages.stream(
        model=model, max_tokens=64, messages=conversation, tools=TOOLS, extra_headers=TOOL_CALL
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    report(
        "stream-" + model,
        text=text,
        blocks=blocks(final),
        stop_reason=final.stop_reason,
        usage=usage(final),
    )

    # A tool result sent back: the second turn of an agent loop.
    tool_use = next(block for block in message.content if block.type == "tool_use")
    followup = client.messages.create(
        model=model,
        max_tokens=64,
        messages=conversation
        + [
            {"role": "assistant", "content": message.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use.id, "content": "18 degrees"},
                    {"type": "text", "text": "Thanks, and tomorrow?"},
                ],
            },
        ],
        tools=TOOLS,
    )
    report("tool-result-" + model, blocks=blocks(followup), stop_reason=followup.stop_reason)

    count = client.messages.count_tokens(model=model, messages=conversation, system="You are terse.")
    report("count-" + model, input_tokens=count.input_tokens)

# Errors in Anthropic's shape, as the SDK's exception classes.
try:
    client.messages.create(model="no-such-model", max_tokens=5, messages=conversation)
    report("error-not-found", ok=False)
except anthropic.NotFoundError as err:
    report("error-not-found", status=err.status_code, error_type=err.body["error"]["type"], request_id=err.request_id)
try:
    client.messages.create(model="gpt-4o-mini", max_tokens=5, messages=conversation, extra_body={"top_k": 5})
    report("error-unsupported", ok=False)
except anthropic.BadRequestError as err:
    report("error-unsupported", status=err.status_code, error_type=err.body["error"]["type"], message=err.body["error"]["message"])
try:
    anthropic.Anthropic(base_url=base, api_key=retail_key, max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=5, messages=conversation
    )
    report("error-forbidden", ok=False)
except anthropic.PermissionDeniedError as err:
    report("error-forbidden", status=err.status_code, error_type=err.body["error"]["type"])
try:
    client.messages.create(
        model="gpt-4o-mini", max_tokens=5, messages=conversation, extra_headers={"x-mock-status": "429"}
    )
    report("error-upstream", ok=False)
except anthropic.RateLimitError as err:
    report("error-upstream", status=err.status_code, error_type=err.body["error"]["type"])

# The model list: the wealth key's and the retail key's, in Anthropic's shape.
report("models-wealth", ids=[model.id for model in client.models.list()])
retail = anthropic.Anthropic(base_url=base, api_key=retail_key, max_retries=0)
report("models-retail", ids=[model.id for model in retail.models.list()])
# One model: the wealth key may use `smart`; for the retail key it does not exist.
smart = client.models.retrieve("smart")
report("model-smart", id=smart.id, type=smart.type)
try:
    retail.models.retrieve("smart")
    report("model-smart-retail", ok=False)
except anthropic.NotFoundError as err:
    report("model-smart-retail", status=err.status_code, error_type=err.body["error"]["type"])

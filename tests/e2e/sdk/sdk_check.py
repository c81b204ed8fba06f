"""Calls a running aigw gateway with the real OpenAI and Anthropic Python SDKs.

Usage: sdk_check.py <base url> <retail key> <wealth key> <jwt>
Prints one JSON object per line: {"case": ..., "ok": bool, ...}. The Rust end-to-end test
(tests/e2e/tests/sdk.rs) runs it with the project venv's python (`just sdk-tools`) and asserts on it.
"""
import json
import sys

import anthropic
import openai

base, retail_key, wealth_key, token = sys.argv[1:5]


def report(case, **fields):
    print(json.dumps({"case": case, **fields}), flush=True)


def chat(client, model="gpt-4o-mini"):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5)


def openai_client(**kwargs):
    return openai.OpenAI(base_url=base + "/v1", max_retries=0, **kwargs)


# The demo key as the SDK sends it (Authorization: Bearer), and in the other header forms.
reply = chat(openai_client(api_key=retail_key))
report("openai-bearer", ok=True, content=reply.choices[0].message.content)
for header in ("x-api-key", "api-key"):
    reply = chat(openai_client(api_key="unused-placeholder", default_headers={header: retail_key}))
    report("openai-" + header, ok=True, content=reply.choices[0].message.content)

# A wrong key: the SDK's AuthenticationError, with the gateway's code.
try:
    chat(openai_client(api_key="sk-wrong"))
    report("openai-wrong-key", ok=False)
except openai.AuthenticationError as err:
    report("openai-wrong-key", ok=True, status=err.status_code, code=err.code)

# The retail key may not use Claude: PermissionDeniedError.
try:
    chat(openai_client(api_key=retail_key), model="claude-sonnet-4-5")
    report("openai-model-not-allowed", ok=False)
except openai.PermissionDeniedError as err:
    report("openai-model-not-allowed", ok=True, status=err.status_code, code=err.code)

# A JWT as the API key still works.
reply = chat(openai_client(api_key=token))
report("openai-jwt", ok=True, content=reply.choices[0].message.content)

# Anthropic's SDK sends x-api-key.
client = anthropic.Anthropic(base_url=base, api_key=wealth_key, max_retries=0)
message = client.messages.create(
    model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
)
report("anthropic-key", ok=True, content=message.content[0].text)
try:
    anthropic.Anthropic(base_url=base, api_key="sk-wrong", max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    report("anthropic-wrong-key", ok=False)
except anthropic.AuthenticationError as err:
    report("anthropic-wrong-key", ok=True, status=err.status_code, error_type=err.body["error"]["type"] if isinstance(err.body, dict) else None)

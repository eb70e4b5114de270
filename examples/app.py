"""A small application that calls LLM APIs: the code under test in the example suite."""

from __future__ import annotations

import json

import anthropic
import openai

MODEL = "gpt-4o-mini"


def summarize(client: openai.OpenAI, text: str) -> str:
    """One-sentence summary of ``text``."""
    reply = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        messages=[
            {"role": "system", "content": "Summarize in one sentence."},
            {"role": "user", "content": text},
        ],
    )
    return reply.choices[0].message.content or ""


def stream_story(client: openai.OpenAI, prompt: str) -> list[str]:
    """The pieces of a streamed reply, in order."""
    stream = client.chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": prompt}]
    )
    return [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]


async def answer(client: openai.AsyncOpenAI, question: str) -> str:
    """An answer from the Responses API, asynchronously."""
    response = await client.responses.create(model=MODEL, input=question)
    return response.output_text


def embed(client: openai.OpenAI, texts: list[str]) -> list[list[float]]:
    """Embeddings of ``texts``."""
    result = client.embeddings.create(model="text-embedding-3-small", input=texts)
    return [item.embedding for item in result.data]


def ask_claude(client: anthropic.Anthropic, question: str) -> str:
    """Claude's answer to ``question``."""
    message = client.messages.create(
        model="claude-opus-4-6", max_tokens=256, messages=[{"role": "user", "content": question}]
    )
    block = message.content[0]
    return block.text if block.type == "text" else json.dumps(block.model_dump())

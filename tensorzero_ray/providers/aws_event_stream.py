"""AWS's binary event-stream responses (Bedrock's ConverseStream, SageMaker's response
streams), read as they arrive and decoded with botocore."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import yarl
from botocore.eventstream import EventStreamBuffer, ParserError

from tensorzero_ray.providers.base import Provider, proxy_for, scrub_secrets


async def event_stream(
    provider: Provider, url: yarl.URL, headers: dict[str, str], raw_request: str
) -> AsyncIterator[tuple[str, bytes]]:
    """(event type, payload) per message; an exception message comes as
    ("exception", "<its type>: <its payload>")."""
    try:
        async with provider.session.post(
            url, data=raw_request.encode(), headers=headers, proxy=proxy_for(str(url))
        ) as response:
            if response.status >= 400:
                text = scrub_secrets((await response.read()).decode(errors="replace"), headers)
                raise provider.http_error(response.status, raw_request, text)
            decoder = EventStreamBuffer()
            async for piece in response.content.iter_any():
                decoder.add_data(piece)
                for message in decoder:
                    if message.headers.get(":message-type") == "event":
                        yield message.headers.get(":event-type", ""), message.payload
                    else:
                        kind = message.headers.get(":exception-type") or message.headers.get(":error-code")
                        yield "exception", f"{kind}: {_message(message.payload)}".encode()
    except ParserError as exc:
        raise provider.error(
            f"Error from {provider.provider_type} server: malformed event stream: {exc}", raw_request=raw_request
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise provider.transport_error(exc, raw_request) from None


def _message(payload: bytes) -> str:
    """An exception's `message` (Bedrock) or `Message` (SageMaker), else its payload."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message", parsed.get("Message")), str):
        return parsed.get("message", parsed.get("Message"))
    return payload.decode(errors="replace")

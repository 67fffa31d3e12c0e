"""A small MCP server written with the official Python SDK (`mcp`), over Streamable HTTP
(at /mcp) or the older HTTP+SSE transport (at /sse), that answers only requests carrying
its bearer token. Tools: `lookup_order` (an answer the model must read), `hang` (never
answers, for timeouts).

Usage: python mcp_orders.py PORT TOKEN [streamable|sse]
"""

import asyncio
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("orders")


@server.tool()
def lookup_order(order_id: str) -> str:
    """Look up an order by its id and return its contents and shipping status."""
    return f"Order {order_id}: 3 sea otter plushies, shipped on 2 November 2026."


@server.tool()
async def hang() -> str:
    """A tool that never finishes."""
    await asyncio.sleep(3600)
    return "never"


def require_token(app, token):
    expected = f"Bearer {token}".encode()

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": b'{"error": "invalid_token"}'})
            return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    port, token = int(sys.argv[1]), sys.argv[2]
    transport = sys.argv[3] if len(sys.argv) > 3 else "streamable"
    app = require_token(server.sse_app() if transport == "sse" else server.streamable_http_app(), token)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")

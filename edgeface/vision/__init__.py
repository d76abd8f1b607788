"""Pure image functions: detect, align, embed. No I/O beyond loading models, no asyncio."""

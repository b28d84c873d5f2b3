"""The participant web app (Starlette under uvicorn): pages, JSON API, images by position.
Platform-specific parts come in as callbacks (hitkit.platforms.app_callbacks)."""

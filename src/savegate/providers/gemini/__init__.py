from savegate.providers.gemini.adapter import GeminiProvider

__all__ = ["GeminiProvider"]

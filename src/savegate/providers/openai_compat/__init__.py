from savegate.providers.openai_compat.adapter import OpenAICompatProvider

__all__ = ["OpenAICompatProvider"]

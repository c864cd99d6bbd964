from savegate.providers.openai_compat.adapter import OpenAICompatProvider
from savegate.providers.openai_compat.responses import OpenAIResponsesProvider

__all__ = ["OpenAICompatProvider", "OpenAIResponsesProvider"]

from savegate.providers.anthropic.adapter import AnthropicProvider

__all__ = ["AnthropicProvider"]

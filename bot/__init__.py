"""The conversation, channel-agnostic: understanding, identity, answers, hand-off, rules."""

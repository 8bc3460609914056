"""Re-exports the scripted chat model of :mod:`chathistory.fake_chat_model`, for tests.

``chathistory.testing`` is for tests only; the demo, shipped at run time,
imports the model from its own module, so nothing shipped imports ``testing``.
"""

from chathistory.fake_chat_model import ToolCallingFakeModel, call_tool_then_answer

__all__ = ["ToolCallingFakeModel", "call_tool_then_answer"]

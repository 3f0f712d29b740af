"""Semantic question answering over policy documents, with cited passages.

The public API, for code that embeds the assistant:

    from qa import Assistant, Config
    answer = Assistant(Config()).ask("民生实事项目是怎么确定的？")
    answer.outcome, answer.passages[0].citation, answer.to_json()

`Assistant` (qa/assistant.py) builds the index and answers; `Config` (qa/config.py) holds every setting;
`Answer` (qa/answer.py) is what a question gets back; `QAError` (qa/errors.py) is the base of the errors a
user can act on. The stages live in subpackages: docs/architecture.md draws them.
"""

__version__ = "0.1.0"
__all__ = ["Answer", "Assistant", "Config", "QAError", "__version__"]

# Where each public name lives. They are loaded on first use (PEP 562), so `import qa.config` does not load
# the model, the index code and the page's libraries, and no stage imports the facade by importing the package.
_PUBLIC = {"Answer": "qa.answer", "Assistant": "qa.assistant", "Config": "qa.config", "QAError": "qa.errors"}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

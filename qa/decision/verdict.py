"""An index's own verdict: the decision's weights and bars fitted on its library's labelled questions.

The shipped calibration (qa/decision/data/relevance.json) is fitted on the bundled model's scores over three
corpora; a model tuned on a library moves the cosines, and one calibration cannot keep "answered"'s promise on
every model and index. `qa calibrate` (qa/tuning/verdict.py) fits one for the index at hand and writes it here:

    index/verdict.json     beside `current` and `builds/`, so a rebuild of the same corpus keeps it

It records the model it was fitted with (its name, the precision questions are encoded in, and a fingerprint
of the model's files: their sizes and modification times, the rule that tells an ONNX export is of these files)
and the figures it was chosen by. The assistant judges with it while the index's model is that model; after
the model changed it judges with the shipped calibration and says so once.
"""

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from qa.decision.calibration import INDEX, LANGUAGES, Calibration, calibration_from_json
from qa.errors import CalibrationError

VERDICT_FILE = "verdict.json"
VERDICT_FORMAT = 1
REFIT_HINT = "run `qa calibrate` with the library's labelled questions again, or delete the file to judge with the shipped calibration"


@dataclass(frozen=True)
class ModelIdentity:
    """What the confidence's scores depend on in a model: its name, the precision of the questions' vectors and
    a fingerprint of its files ("" for a model named on a hub, known by its name alone)."""

    name: str
    precision: str
    fingerprint: str

    def to_json(self) -> dict:
        return {"name": self.name, "precision": self.precision, "fingerprint": self.fingerprint}


def model_identity(embedder) -> ModelIdentity:
    """The ModelIdentity of an Embedder (qa/embeddings/model.py)."""
    from qa.embeddings.onnx_export import model_files

    folder = embedder.model_folder
    files = model_files(folder) if folder is not None else {}
    fingerprint = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16] if files else ""
    return ModelIdentity(embedder.model_name, embedder.passage_precision, fingerprint)


@dataclass(frozen=True)
class IndexVerdict:
    """The contents of verdict.json: the calibration (thresholds for the languages it was fitted on), the model
    it was fitted with, and the report of the fit (inputs, folds, figures held out and in sample)."""

    calibration: Calibration
    model: ModelIdentity
    report: dict

    def to_json(self) -> dict:
        return {"format": VERDICT_FORMAT, "model": self.model.to_json(), "calibration": self.calibration.to_json(),
                "report": self.report}


def verdict_path(index_dir: Path) -> Path:
    return Path(index_dir) / VERDICT_FILE


def write_verdict(index_dir: Path, verdict: IndexVerdict) -> Path:
    """Write `verdict` into the index folder in one step (a reader sees the old file or the new); CalibrationError
    when it cannot be written."""
    path = verdict_path(index_dir)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as file:
            file.write(json.dumps(verdict.to_json(), ensure_ascii=False, indent=1) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise CalibrationError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def read_verdict(index_dir: Path) -> IndexVerdict | None:
    """The verdict in the index folder, or None when it has none; CalibrationError naming the file when it is damaged."""
    path = verdict_path(index_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise CalibrationError(f"the index's own verdict {path} cannot be read ({getattr(error, 'strerror', None) or error}); "
                               f"{REFIT_HINT}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != VERDICT_FORMAT:
            raise ValueError(f"not a verdict of format {VERDICT_FORMAT}")
        model = ModelIdentity(**{key: str(data["model"][key]) for key in ("name", "precision", "fingerprint")})
        thresholds = data["calibration"]["thresholds"]
        languages = [name for name in LANGUAGES if name in thresholds]
        if not languages:
            raise ValueError("thresholds for no language")
        calibration = replace(calibration_from_json(data["calibration"], languages), name=INDEX)
        report = data.get("report", {})
    except (ValueError, KeyError, TypeError) as error:
        reason = "not valid JSON, truncated or damaged" if isinstance(error, json.JSONDecodeError) else short(error)
        raise CalibrationError(f"the index's own verdict {path} cannot be used ({reason}); {REFIT_HINT}") from None
    return IndexVerdict(calibration, model, report)


def short(error: Exception) -> str:
    """A KeyError's missing key, or the error's text."""
    return f"no {error}" if isinstance(error, KeyError) else str(error) or type(error).__name__


def index_calibration(index_dir: Path, identity: Callable[[], ModelIdentity], shipped: Calibration) -> tuple[Calibration, str | None]:
    """The calibration that judges questions on the index in `index_dir` asked with the model `identity()` gives:
    its own verdict, the shipped calibration for languages it was not fitted on, when it was fitted with that model;
    else `shipped`, with a note saying why when there is a verdict of another model. CalibrationError for a damaged
    verdict.json. `identity` is called only when there is a verdict (it may install the bundled model)."""
    verdict = read_verdict(index_dir)
    if verdict is None:
        return shipped, None
    model = identity()
    if verdict.model != model:
        changed = "model" if verdict.model.name != model.name else (
            "precision" if verdict.model.precision != model.precision else "model's files")
        return shipped, (f"note: {verdict_path(index_dir)} was fitted with another {changed} ({_named(verdict.model)}, now "
                         f"{_named(model)}): answers are judged by the shipped calibration until `qa calibrate` is run again")
    return replace(verdict.calibration, fallback=shipped), None


def _named(model: ModelIdentity) -> str:
    return f"{model.name}, {model.precision}" + (f", files {model.fingerprint}" if model.fingerprint else "")

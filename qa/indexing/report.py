"""What a build tells its caller: its progress while it runs (`Progress`) and its report once done (`BuildReport`)."""

from collections.abc import Callable
from dataclasses import dataclass, field

from qa.documents.corpus import Problem
from qa.documents.ocr import OcrSummary
from qa.indexing.changes import CorpusChanges

# progress(stage, done, total) is called with these stages, in this order, so that every stage that can take
# more than a few seconds on a large corpus says how far it got:
#   "reading"    files read, of the files that need reading: new, changed or unreadable before, or all
#                of them after a change of reader (after each file; none when nothing changed)
#   "ocr"        pages read by OCR, of the pages of the file being read that need it (after each page;
#                only while reading a scanned PDF or an image, between two "reading" calls)
#   "cache"      vectors converted, of those an embedding cache written by an earlier version holds (once
#                per cache, after each chunk of 4,096; none otherwise)
#   "passages"   passages whose vectors the embedding cache already had, of all passages (once)
#   "model"      0 of 1 while the embedding model loads, 1 of 1 once loaded (only if something needs embedding)
#   "embedding"  passages embedded, of those the cache did not have (after each batch; once with 0 of 0 if none)
#   "keywords"   passages tokenized for the keyword index, of those the previous build's keyword index does
#                not hold (after each chunk of 2,000; 0 of N first, once with 0 of 0 if none)
#   "second"     passages the second encoder read, of those the cache did not have (after each chunk of
#                512; 0 of N first, once with 0 of 0 if none)
#   "background" the decision's background questions searched, of all of them (after each chunk of 32;
#                once with 0 of 0 when the previous build's background is reused)
#   "writing"    steps of writing and checking the new index, of all of them: the passages and vectors,
#                each other file, the checksums, the check that it loads; 0 of N first, N of N once current
#   "vectors"    vectors added to the vector index, of those to add (after each chunk of 8,192 for an
#                approximate index; during the first step of "writing"; not by Milvus)
Progress = Callable[[str, int, int], None]


@dataclass
class BuildReport:
    documents: int  # documents in the new index, kept versions of unreadable files included
    passages: int
    problems: list[Problem]  # files that could not be read, with the reason
    changes: CorpusChanges  # files added / changed / removed / unchanged since the previous build
    seconds: float
    folder: str
    embedded: int = 0  # texts the model embedded in this build (passages with the same text share one)
    reused: int = 0  # passages whose vectors came from the embedding cache
    # Passages by the embedding cache name of what made their vectors (the model's name, with its precision
    # unless float32): two names when a small rebuild embedded a few passages in float32 (qa/indexing/embedding.py).
    vectors_by: dict[str, int] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # unreadable files whose previously indexed version was kept
    notes: list[str] = field(default_factory=list)  # things worth knowing: encodings guessed, cache trouble
    seconds_by_stage: dict[str, float] = field(default_factory=dict)  # reading, model, embedding, keywords, second, background, writing
    ocr: dict[str, OcrSummary] = field(default_factory=dict)  # by source: the pages read by OCR, and how surely
    # Pages of indexed files that could not be read (OCR found no text): reason "page 3: …"; the rest of the file is indexed.
    page_problems: list[Problem] = field(default_factory=list)

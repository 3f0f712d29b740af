"""Tune the embedding model on the library's own questions (`qa tune`), one module per stage:

    pairs.py      labelled files (STARD .jsonl, TSV of question and passage id) and the feedback log → questions
                  with the passages of the index that answer them, every unusable line reported by number
    negatives.py  hard negatives from the project's own retrieval, and the training triplets
    training.py   the fine-tune itself (MultipleNegativesRankingLoss), on the CPU, with checkpoints
    report.py     figures before and after, the verdict (worse on the held-out fold: refused) and the model card
    tune.py       the stages in order, resumable
"""

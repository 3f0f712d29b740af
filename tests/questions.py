"""Bad and odd questions, the same through every door: `qa ask` (tests/test_cli.py), the Python API
(tests/test_assistant.py), the chat page's logic (tests/page/test_chat.py) and its events and API
endpoint (tests/page/test_events.py); and what every answer must be (check_answer).

Each bad input gets a clear message or a normal answer, never a traceback and never a hang: empty
and whitespace-only questions, control characters, invalid UTF-8, HTML and script, emoji,
right-to-left text, a script the model does not know, a 19,500-character question (cut to what the
model reads, 512 tokens, with a note saying so), and one over the longest question taken (refused).
"""

from .conftest import SEED_CORPUS

EMPTY = "the question is empty: type a question about the documents"
NOT_TEXT = "the question must be text"
QUESTION = "民生实事项目是怎么确定的？"  # case 1 of the seed
TOO_LONG = "the question has 20,001 characters; at most 20,000 are accepted: ask a shorter question"
# 13 characters × 1,500 = 19,500 characters (a question may have 20,000), thousands of tokens: the model
# reads 512 of them.
LONG = QUESTION * 1500
HTML = '<script>alert("x")</script><img src=x onerror="alert(1)">'
EMOJI = "😀🎉👍🏽"
RIGHT_TO_LEFT = "ما هي سياسة الإسكان؟"  # Arabic: "what is the housing policy?"
CHEROKEE = "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ"  # a script the model's vocabulary does not cover
CORPUS_TEXT = {path.name: path.read_text(encoding="utf-8") for path in SEED_CORPUS.iterdir() if path.is_file()}


def check_answer(answer: dict, calibration, k: int = 5) -> None:
    """What every answer must be: k ranked passages quoting the corpus exactly, scores in 0..0.99 that
    never rise down the list, and the outcome the calibration gives its confidence."""
    passages = answer["passages"]
    assert [p["rank"] for p in passages] == list(range(1, k + 1))
    scores = [p["score"] for p in passages]
    assert all(0 <= score <= 0.99 for score in scores) and scores == sorted(scores, reverse=True)
    assert answer["version"] == 5 and 0 <= answer["confidence"] <= 1
    judging = calibration.for_question(answer["question"])
    assert answer["calibration"] == judging.name
    assert answer["outcome"] == judging.outcome(answer["confidence"], answer["question"])
    assert answer["answered"] is (answer["outcome"] == "answered")
    for p in passages:
        assert CORPUS_TEXT[p["source"]][p["start"] : p["end"]] == p["text"]

"""The three outcomes of the decision (qa/decision/relevance.py), as answers, the page, the terminal and
the evaluation name them."""

ANSWERED = "answered"  # the best passage answers the question
UNCERTAIN = "uncertain"  # it may: the passages are shown with a warning
NOT_FOUND = "not_found"  # nothing in the corpus is relevant enough
OUTCOMES = (ANSWERED, UNCERTAIN, NOT_FOUND)

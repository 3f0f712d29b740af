"""The decision: answered, uncertain or not found (outcomes), from evidence about the first passage
(evidence), placed against the corpus's own background (background) by a fitted calibration (calibration);
`judge` (relevance) composes them."""

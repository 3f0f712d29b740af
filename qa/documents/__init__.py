"""Documents: the corpus folder read into documents and sections, one reader per file format (readers/),
OCR of scans, tables as lines, PDF text repair, the seed's case tables, and documents added from the page."""

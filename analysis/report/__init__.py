"""The written report: one self-contained HTML page from the stored analysis."""

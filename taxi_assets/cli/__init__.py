"""The ``taxi-assets`` command: parser and error boundary (``main``), pipeline, analyst and demo commands."""

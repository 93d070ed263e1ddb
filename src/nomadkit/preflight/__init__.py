"""The preflight: prove the whole path before doors open, end in GO / NO-GO with evidence."""

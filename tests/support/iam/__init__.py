"""IAM conformance: every AWS call a function's code makes, checked against that
function's role in the synthesized template by a real policy evaluator.

``recorder`` notes each botocore call (and each presigned URL) made while a Lambda
handler runs, ``requests`` turns a call into the IAM requests AWS authorises it by,
``policies`` reads each function's role policy out of a synthesized template with
the names the test used, and ``evaluator`` asks iam-simulate (npm) for the verdicts.
"""

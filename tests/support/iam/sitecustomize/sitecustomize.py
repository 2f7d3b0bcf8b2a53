"""Started by Python in local-mode subprocesses of the e2e tests (this folder is put
on their PYTHONPATH): records the handlers' AWS calls for the IAM conformance test."""

import os

if os.environ.get("IMAGESEARCH_IAM_RECORD"):
    from tests.support.iam.recorder import install

    install()

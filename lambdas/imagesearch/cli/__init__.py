"""The ``imagesearch`` command line: a client of local mode and of the deployed stack.

Kept light to import (no numpy, Pillow or moto): boto3 is imported when a command
needs AWS, local mode only by ``imagesearch local``. Never part of the Lambda asset.
"""

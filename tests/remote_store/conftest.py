"""The S3 server on loopback (``tests.support.s3``) for the stores-by-URI tests."""

from tests.support.s3 import s3_server  # noqa: F401

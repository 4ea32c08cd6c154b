"""Django's SQLite backend, told the real bound-parameter limit of the linked SQLite.

Django assumes SQLite's historical limit of 999 parameters and splits bulk
writes into many statements; SQLite 3.32+ allows 32766, so a tick's bulk
writes stay single statements.
"""
import sqlite3

from django.db.backends.sqlite3 import base, features


def _variable_limit() -> int:
    probe = sqlite3.connect(":memory:")
    try:
        return probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    except AttributeError:  # Python < 3.11
        return 999
    finally:
        probe.close()


class DatabaseFeatures(features.DatabaseFeatures):
    max_query_params = _variable_limit()


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures

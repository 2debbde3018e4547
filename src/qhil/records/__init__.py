"""Run records and the key store.

Every run (experiment or calibration) is indexed in SQLite and keeps its raw
arrays in one HDF5 file; final keys live in owner-only files and are referenced
from run records by id and SHA-256 only. See ``README.md`` in this directory.
"""

from qhil.records.arrays import RunArrays
from qhil.records.errors import (
    AmbiguousRunIdError,
    ArrayDataError,
    KeyIntegrityError,
    KeyNotFoundError,
    KeyPermissionError,
    KeyStoreError,
    RecordError,
    RecordValueError,
    RunNotFoundError,
    RunStateError,
    StoreAccessError,
    StoreVersionError,
)
from qhil.records.formatting import (
    format_run_detail,
    format_run_table,
    run_to_json_dict,
    runs_to_json_list,
)
from qhil.records.keystore import KeyRef, KeyStore, SecretKey, key_digest
from qhil.records.models import ArrayInfo, RunOwner, RunRecord, RunStatus
from qhil.records.paths import default_data_dir, default_key_dir
from qhil.records.profile_snapshot import ProfileSnapshot
from qhil.records.run import Run
from qhil.records.software import software_info
from qhil.records.store import RunStore

__all__ = [
    "AmbiguousRunIdError",
    "ArrayDataError",
    "ArrayInfo",
    "KeyIntegrityError",
    "KeyNotFoundError",
    "KeyPermissionError",
    "KeyRef",
    "KeyStore",
    "KeyStoreError",
    "ProfileSnapshot",
    "RecordError",
    "RecordValueError",
    "Run",
    "RunArrays",
    "RunNotFoundError",
    "RunOwner",
    "RunRecord",
    "RunStateError",
    "RunStatus",
    "RunStore",
    "SecretKey",
    "StoreAccessError",
    "StoreVersionError",
    "default_data_dir",
    "default_key_dir",
    "format_run_detail",
    "format_run_table",
    "key_digest",
    "run_to_json_dict",
    "runs_to_json_list",
    "software_info",
]

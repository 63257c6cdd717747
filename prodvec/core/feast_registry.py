"""A Feast file registry that readers never see half-written.

Feast 0.67's `FileRegistryStore` rewrites `registry.db` in place (open "wb",
write): a reader that refreshes its registry at that moment parses an empty
or truncated file and answers `FeatureViewNotFoundException` — which the
loopback load test (`prodvec.consumers.online_load`) hit on every
materialization, because materialization records the view's state in the
registry. Writing to a temporary file and renaming it over the old one makes
each write atomic. Selected with `registry_store_type` in the RegistryConfig
(`feast_ops.open_store`, `feature_repo/feature_store.yaml`).
"""

from __future__ import annotations

import os
import tempfile
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-registry-", dir=self._filepath.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(registry_proto.SerializeToString())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._filepath)
        except BaseException:
            os.unlink(tmp) if os.path.exists(tmp) else None
            raise

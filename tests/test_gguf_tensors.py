import numpy as np
import pytest

from lmbook import sources


def test_gguf_tensors_reads_the_tensor_table(tmp_path):
    import gguf

    path = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_string("general.license", "mit")
    w.add_tensor("a.weight", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.add_tensor("b.weight", np.ones(32, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    table = sources.gguf_tensors(path)
    reader = gguf.GGUFReader(path)
    assert [(t.name, t.type, t.n_bytes, t.offset) for t in table] == [
        (r.name, r.tensor_type.name, int(r.n_bytes), int(r.data_offset)) for r in reader.tensors]
    assert table[0].shape == (2, 32) and table[0].n_elements == 64 and table[0].type == "F32"
    assert table[1].type == "F16" and table[1].n_bytes == 64
    raw = np.fromfile(path, dtype=np.float32, count=64, offset=table[0].offset)
    assert np.array_equal(raw.reshape(2, 32), np.arange(64, dtype=np.float32).reshape(2, 32))
    (tmp_path / "not.gguf").write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ValueError, match="not a GGUF file"):
        sources.gguf_tensors(tmp_path / "not.gguf")

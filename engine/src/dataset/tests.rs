//! File formats: round trips through hand-written files of every format,
//! and the error variant for each kind of broken file.

use super::*;
use tempfile::TempDir;

const N: usize = 5;
const D: usize = 3;

fn data() -> Vec<f32> {
    (0..N * D).map(|i| i as f32 * 1.5 - 7.0).collect()
}

fn bytes_data() -> Vec<u8> {
    (0..N * D).map(|i| (i * 17 % 256) as u8).collect()
}

fn bin_file(n: u32, d: u32, body: &[u8]) -> Vec<u8> {
    let mut v = n.to_le_bytes().to_vec();
    v.extend(d.to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn vecs_file(d: i32, rows: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for r in rows {
        v.extend(d.to_le_bytes());
        v.extend_from_slice(r);
    }
    v
}

fn f32_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn npy_file(major: u8, dict: &str, body: &[u8]) -> Vec<u8> {
    let pre = if major == 1 { 10 } else { 12 };
    let mut header = dict.to_string();
    while !(pre + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut v = b"\x93NUMPY".to_vec();
    v.push(major);
    v.push(0);
    if major == 1 {
        v.extend((header.len() as u16).to_le_bytes());
    } else {
        v.extend((header.len() as u32).to_le_bytes());
    }
    v.extend(header.as_bytes());
    v.extend_from_slice(body);
    v
}

fn put(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn check_f32(path: &Path, want: &[f32], elem: ElemType) {
    let f = VectorFile::open(path).unwrap();
    assert_eq!((f.len(), f.dim(), f.elem_type()), (N, D, elem), "{path:?}");
    assert_eq!(f.to_vec_f32(), want, "{path:?}");
    assert_eq!(f.f32_data().as_ref(), want, "{path:?}");
    assert_eq!(f.read_rows_f32(1, 3), want[D..4 * D].to_vec(), "{path:?}");
    let mut rows = vec![0.0; 3 * D];
    f.pread_rows_into(1, &mut rows).unwrap();
    assert_eq!(rows, want[D..4 * D], "pread, {path:?}");
    f.pread_rows_into(N, &mut []).unwrap();
    let mut row = vec![0.0; D];
    f.row_f32(4, &mut row);
    assert_eq!(row, want[4 * D..], "{path:?}");
    f.check_finite().unwrap();
}

#[test]
fn every_format_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let v = data();
    let b = bytes_data();
    let as_u8: Vec<f32> = b.iter().map(|x| *x as f32).collect();
    let as_i8: Vec<f32> = b.iter().map(|x| *x as i8 as f32).collect();

    let p = dir.path().join("a.fbin");
    write_fbin(&p, N, D, &v).unwrap();
    check_f32(&p, &v, ElemType::F32);
    assert!(matches!(VectorFile::open(&p).unwrap().f32_data(), Cow::Borrowed(_)));

    check_f32(&put(&dir, "a.u8bin", &bin_file(5, 3, &b)), &as_u8, ElemType::U8);
    check_f32(&put(&dir, "a.i8bin", &bin_file(5, 3, &b)), &as_i8, ElemType::I8);

    let rows: Vec<Vec<u8>> = v.chunks(D).map(f32_le).collect();
    let rows: Vec<&[u8]> = rows.iter().map(|r| r.as_slice()).collect();
    check_f32(&put(&dir, "a.fvecs", &vecs_file(3, &rows)), &v, ElemType::F32);
    let brows: Vec<&[u8]> = b.chunks(D).collect();
    check_f32(&put(&dir, "a.bvecs", &vecs_file(3, &brows)), &as_u8, ElemType::U8);

    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }";
    check_f32(&put(&dir, "a.npy", &npy_file(1, dict, &f32_le(&v))), &v, ElemType::F32);
    check_f32(&put(&dir, "b.npy", &npy_file(2, dict, &f32_le(&v))), &v, ElemType::F32);
    let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (5, 3), }";
    check_f32(&put(&dir, "c.npy", &npy_file(1, dict, &b)), &as_u8, ElemType::U8);
    let dict = "{'descr': '|i1', 'fortran_order': False, 'shape': (5, 3), }";
    check_f32(&put(&dir, "d.npy", &npy_file(1, dict, &b)), &as_i8, ElemType::I8);

    let ids: Vec<u32> = (0..12).map(|i| i * 1000 + 7).collect();
    let p = dir.path().join("gt.ibin");
    write_ibin(&p, 4, 3, &ids).unwrap();
    assert_eq!(read_ibin(&p).unwrap(), (4, 3, ids.clone()));

    let mut iv = Vec::new();
    for r in ids.chunks(3) {
        iv.extend(3i32.to_le_bytes());
        r.iter().for_each(|x| iv.extend(x.to_le_bytes()));
    }
    assert_eq!(read_ivecs(put(&dir, "gt.ivecs", &iv)).unwrap(), (4, 3, ids));

    // Writers leave no temporary files behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn truncated_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let body = f32_le(&data());
    let full = bin_file(5, 3, &body);

    let p = put(&dir, "base.fbin", &full[..full.len() - 4]);
    let e = VectorFile::open(&p).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("base.fbin") && msg.contains("5 x 3 f32 = 68 bytes but file has 64 bytes"),
        "{msg}"
    );

    let e = VectorFile::open(put(&dir, "h.fbin", &full[..6])).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { .. }), "{e}");
    let e = VectorFile::open(put(&dir, "e.fbin", &[])).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { .. }), "{e}");

    let mut long = full.clone();
    long.push(0);
    let e = VectorFile::open(put(&dir, "long.fbin", &long)).unwrap_err();
    assert!(matches!(e, DatasetError::SizeMismatch { .. }), "{e}");

    let rows: Vec<Vec<u8>> = data().chunks(D).map(f32_le).collect();
    let rows: Vec<&[u8]> = rows.iter().map(|r| r.as_slice()).collect();
    let fv = vecs_file(3, &rows);
    let e = VectorFile::open(put(&dir, "t.fvecs", &fv[..fv.len() - 2])).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { .. }), "{e}");

    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }";
    let np = npy_file(1, dict, &body);
    let e = VectorFile::open(put(&dir, "t.npy", &np[..np.len() - 1])).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { .. }), "{e}");

    let ib = bin_file(4, 3, &[0u8; 44]);
    let e = read_ibin(put(&dir, "t.ibin", &ib)).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { .. }), "{e}");
}

#[test]
fn bad_headers_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let e = VectorFile::open(put(&dir, "z.fbin", &bin_file(0, 0, &[]))).unwrap_err();
    assert!(matches!(e, DatasetError::BadHeader { .. }), "{e}");

    let e = VectorFile::open(put(&dir, "z.fvecs", &vecs_file(-2, &[&[0; 8]]))).unwrap_err();
    assert!(matches!(e, DatasetError::BadHeader { .. }), "{e}");

    // Second and last row claims d = 2 while the first has d = 3.
    let mut fv = vecs_file(3, &[&[0; 3]]);
    fv.extend(vecs_file(2, &[&[0; 3]]));
    let e = VectorFile::open(put(&dir, "x.bvecs", &fv)).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::InconsistentDim {
                row: 1,
                found: 2,
                expected: 3,
                ..
            }
        ),
        "{e}"
    );

    let e = VectorFile::open(put(&dir, "m.npy", b"NOTNUMPYxxxxxxxx")).unwrap_err();
    assert!(matches!(e, DatasetError::BadHeader { .. }), "{e}");

    let e = VectorFile::open(put(&dir, "x.txt", b"hello")).unwrap_err();
    assert!(matches!(e, DatasetError::UnknownFormat { .. }), "{e}");

    let e = VectorFile::open(dir.path().join("missing.fbin")).unwrap_err();
    assert!(
        matches!(e, DatasetError::Io { .. }) && e.to_string().contains("missing.fbin"),
        "{e}"
    );
}

#[test]
fn unsupported_npy_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f8 = "{'descr': '<f8', 'fortran_order': False, 'shape': (5, 3), }";
    let e = VectorFile::open(put(&dir, "f8.npy", &npy_file(1, f8, &[0; 120]))).unwrap_err();
    assert!(
        matches!(&e, DatasetError::UnsupportedDtype { dtype, .. } if dtype.contains("<f8")),
        "{e}"
    );
    let be = "{'descr': '>f4', 'fortran_order': False, 'shape': (5, 3), }";
    let e = VectorFile::open(put(&dir, "be.npy", &npy_file(1, be, &[0; 60]))).unwrap_err();
    assert!(matches!(e, DatasetError::UnsupportedDtype { .. }), "{e}");

    let fo = "{'descr': '<f4', 'fortran_order': True, 'shape': (5, 3), }";
    let e = VectorFile::open(put(&dir, "fo.npy", &npy_file(1, fo, &[0; 60]))).unwrap_err();
    assert!(matches!(e, DatasetError::UnsupportedLayout { .. }), "{e}");

    let d1 = "{'descr': '<f4', 'fortran_order': False, 'shape': (15,), }";
    let e = VectorFile::open(put(&dir, "d1.npy", &npy_file(1, d1, &[0; 60]))).unwrap_err();
    assert!(matches!(e, DatasetError::UnsupportedLayout { .. }), "{e}");

    let d3 = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 5, 3), }";
    let e = VectorFile::open(put(&dir, "d3.npy", &npy_file(2, d3, &[0; 60]))).unwrap_err();
    assert!(matches!(e, DatasetError::UnsupportedLayout { .. }), "{e}");
}

#[test]
fn non_finite_values_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = data();
    v[3 * D + 2] = f32::NAN;
    v[4 * D] = f32::INFINITY;
    let p = dir.path().join("nan.fbin");
    write_fbin(&p, N, D, &v).unwrap();
    let e = VectorFile::open(&p).unwrap().check_finite().unwrap_err();
    assert!(matches!(e, DatasetError::NonFinite { row: 3, col: 2, .. }), "{e}");
    assert!(e.to_string().contains("row 3, column 2"), "{e}");
}

#[test]
fn writers_validate_and_leave_nothing_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.fbin");
    let e = write_fbin(&p, 4, 3, &data()).unwrap_err();
    assert!(matches!(e, DatasetError::InvalidInput { .. }), "{e}");
    let e = write_ibin(dir.path().join("w.ibin"), 2, 2, &[1, 2, 3]).unwrap_err();
    assert!(matches!(e, DatasetError::InvalidInput { .. }), "{e}");

    // A writer dropped before finish() leaves neither the file nor its temp.
    let mut w = FbinWriter::create(&p, 5, 3).unwrap();
    w.write_rows(&data()[..6]).unwrap();
    drop(w);
    let w = FbinWriter::create(&p, 5, 3).unwrap();
    assert!(w.finish().is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // A rewrite replaces the old file whole.
    write_fbin(&p, N, D, &data()).unwrap();
    write_fbin(&p, 1, 2, &[1.0, 2.0]).unwrap();
    assert_eq!(VectorFile::open(&p).unwrap().to_vec_f32(), vec![1.0, 2.0]);
}

/// Found by the `dataset` fuzz target: an `.fbin` header whose n x d x 4
/// passes 2^64 (n 0xae000003, d 0x68863ed8) overflowed computing the
/// expected size; without overflow checks, n = d = 2^31 wrapped to an
/// expected 8 bytes and an 8-byte file opened as 2^31 rows.
#[test]
fn a_bin_header_whose_size_passes_2_64_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (n, d) in [(0xae00_0003, 0x6886_3ed8), (1 << 31, 1 << 31), (u32::MAX, u32::MAX)] {
        for ext in ["fbin", "u8bin", "i8bin"] {
            let p = put(&dir, &format!("big.{ext}"), &bin_file(n, d, &[]));
            let e = VectorFile::open(&p).unwrap_err();
            assert!(matches!(e, DatasetError::Truncated { .. }), "{n} x {d} .{ext}: {e}");
        }
    }
}

/// Found by the `dataset` fuzz target: the same overflow in `read_ibin`
/// (an `.ibin` header of n 0x68863ed8 x k 0xe13f0268).
#[test]
fn an_ibin_header_whose_size_passes_2_64_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (n, k) in [(0x6886_3ed8, 0xe13f_0268), (1 << 31, 1 << 31), (u32::MAX, u32::MAX)] {
        let p = put(&dir, "big.ibin", &bin_file(n, k, &[]));
        let e = read_ibin(&p).unwrap_err();
        assert!(matches!(e, DatasetError::Truncated { .. }), "{n} x {k}: {e}");
    }
}

/// Found by the `dataset` fuzz target (an out-of-memory): an 8-byte `.fbin`
/// of 0 rows x 0xf4090000 dimensions opens (it is exactly as long as its
/// header says), and `check_finite` allocated a 16 GB row buffer for it.
#[test]
fn check_finite_of_an_empty_file_with_a_huge_dim_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = put(&dir, "empty.fbin", &bin_file(0, 0xf409_0000, &[]));
    let f = VectorFile::open(&p).unwrap();
    assert_eq!((f.len(), f.dim()), (0, 0xf409_0000));
    f.check_finite().unwrap();
}

/// Found by the `dataset` fuzz target (input kept as
/// fuzz/corpus/dataset/crash-npy-descr-char-boundary): an unquoted npy
/// descr with no ']' is shown cut to 40 bytes, and byte 40 fell inside a
/// two-byte character.
#[test]
fn an_unquoted_npy_descr_is_cut_on_a_char_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let descr = format!("{}\u{9e}{}", "x".repeat(39), "y".repeat(10));
    let dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1, 1), }}");
    let p = put(&dir, "odd.npy", &npy_file(1, &dict, &[0]));
    let e = VectorFile::open(&p).unwrap_err();
    assert!(matches!(e, DatasetError::UnsupportedDtype { .. }), "{e}");
}

/// Not found by the fuzzer in its 5 minutes (it would have to write
/// 20-digit numbers into the header text) but the same overflow as the
/// .fbin one, seen while fixing that: an npy shape whose n x d x size passes
/// 2^64. Without overflow checks, shape (2^32, 2^32) wrapped to 0 bytes of
/// data and a header-only file opened as 2^32 rows.
#[test]
fn an_npy_shape_whose_size_passes_2_64_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [
        "4294967296, 4294967296",
        "18446744073709551615, 2",
        "2, 18446744073709551615",
    ] {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
        let p = put(&dir, "big.npy", &npy_file(1, &dict, &[]));
        let e = VectorFile::open(&p).unwrap_err();
        assert!(matches!(e, DatasetError::Truncated { .. }), "({shape}): {e}");
    }
}

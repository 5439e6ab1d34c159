"""DICOM helpers shared by every room: TLS contexts, UID syntax, the C-STORE SCU, frames of
multi-frame objects, slice placement and reduced-resolution decoding."""

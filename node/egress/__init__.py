"""Egress: the outbox that delivers result objects, and a sender per kind of destination
(DIMSE C-STORE, DICOMweb STOW-RS, Orthanc's REST API)."""

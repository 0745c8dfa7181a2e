//! Whole exchanges built and parsed by this module: an IKE_SA_INIT and an encrypted IKE_AUTH.

//! The Fed-BioMed payload.

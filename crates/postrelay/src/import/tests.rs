//! Unit tests of the importers, by subject: `maincf` (the file syntax),
//! `postfix` (main.cf to a configuration), `clients` (msmtp, nullmailer).

mod clients;
mod maincf;
mod postfix;

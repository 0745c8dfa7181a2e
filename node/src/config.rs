//! The one configuration pattern of every node binary: a TOML file, then command-line
//! flags that override it field by field.
//!
//! A binary describes its settings once, as a *layer*: a struct whose fields are all
//! `Option`, deriving `serde::Deserialize` with `deny_unknown_fields` (the file: an
//! unknown or malformed field is an error naming the field and the file) and `clap::Args`
//! (flattened into the binary's command line: the flags, their doc comments the `--help`
//! text; a field without a flag is `#[arg(skip)]`). [`Layers`] holds the file's layer and
//! the flags' layer. The binary's `resolve` takes each field with [`pick!`](crate::pick!) (the flag when
//! given, else the file), applies its default and checks it; a check that fails names the
//! field and where its value came from, `--max-lifetime-secs: max_lifetime_secs: ...` or
//! `/etc/lma.toml: listen_v4: ...`.

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Errors reading or checking a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the cause is the error's source).
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML for the layer: toml's message names the field.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parsed but cannot be used: `place` is the file or the flag.
    #[error("{place}: {field}: {message}")]
    Invalid {
        place: String,
        field: &'static str,
        message: String,
    },
}

/// A binary's settings as one layer (module doc).
pub trait Layer: Default + DeserializeOwned {
    /// The paths in the layer that, read from a file, are relative to the file's folder.
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        Vec::new()
    }
}

/// Reads and parses a TOML file into `T`.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse_text(&text, path)
}

/// Parses TOML text into `T`; `path` names it in errors.
pub fn parse_text<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

/// The file's layer (if a file was given) and the flags' layer.
#[derive(Debug, Clone, Default)]
pub struct Layers<L> {
    path: Option<PathBuf>,
    file: L,
    flags: L,
}

impl<L: Layer> Layers<L> {
    /// Reads the file at `path`, if given, beneath `flags`.
    pub fn load(path: Option<&Path>, flags: L) -> Result<Self, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                Self::parse(&text, path, flags)
            }
            None => Ok(Layers {
                path: None,
                file: L::default(),
                flags,
            }),
        }
    }

    /// Parses the file's `text` (read from `path`) beneath `flags`.
    pub fn parse(text: &str, path: &Path, flags: L) -> Result<Self, ConfigError> {
        let mut file: L = parse_text(text, path)?;
        let folder = path.parent().unwrap_or(Path::new("."));
        for relative in file.paths_mut().into_iter().filter(|p| p.is_relative()) {
            *relative = folder.join(&*relative);
        }
        Ok(Layers {
            path: Some(path.into()),
            file,
            flags,
        })
    }
}

impl<L> Layers<L> {
    /// Layers made elsewhere (tests).
    pub fn new(path: Option<PathBuf>, file: L, flags: L) -> Self {
        Layers { path, file, flags }
    }

    /// The file, if one was given.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn file(&self) -> &L {
        &self.file
    }

    pub fn flags(&self) -> &L {
        &self.flags
    }

    /// The value of one field: the flag's if given, else the file's. Use [`pick!`](crate::pick!),
    /// which names the field once.
    pub fn pick<T: Clone>(
        &self,
        field: &'static str,
        get: impl Fn(&L) -> &Option<T>,
    ) -> Setting<'_, T> {
        let from_flag = get(&self.flags).is_some();
        Setting {
            value: get(&self.flags).clone().or_else(|| get(&self.file).clone()),
            field,
            from_flag,
            path: self.path(),
        }
    }

    /// Where a value of `field` came from: `--the-field`, or the file.
    pub fn place(&self, field: &str, from_flag: bool) -> String {
        place(self.path(), field, from_flag)
    }

    /// An error about `field`, whose value came from a flag (`from_flag`) or the file.
    pub fn invalid(
        &self,
        field: &'static str,
        from_flag: bool,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            place: self.place(field, from_flag),
            field,
            message: message.into(),
        }
    }
}

fn place(path: Option<&Path>, field: &str, from_flag: bool) -> String {
    if from_flag {
        format!("--{}", field.replace('_', "-"))
    } else {
        match path {
            Some(p) => p.display().to_string(),
            None => "configuration (no --config file)".to_string(),
        }
    }
}

/// One field's value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<'a, T> {
    pub value: Option<T>,
    pub field: &'static str,
    /// Whether the flag gave it (else the file, or nothing).
    pub from_flag: bool,
    path: Option<&'a Path>,
}

impl<T> Setting<'_, T> {
    /// `--the-field` or the file.
    pub fn place(&self) -> String {
        place(self.path, self.field, self.from_flag)
    }

    /// An error about this field's value.
    pub fn invalid(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            place: self.place(),
            field: self.field,
            message: message.into(),
        }
    }

    /// The value, or `default` when neither the flag nor the file gave one.
    pub fn or(self, default: T) -> T {
        self.value.unwrap_or(default)
    }

    /// The value, or `T::default()` when neither the flag nor the file gave one.
    pub fn or_default(self) -> T
    where
        T: Default,
    {
        self.value.unwrap_or_default()
    }

    /// The value, or an error naming the field when neither gave one.
    pub fn required(self) -> Result<T, ConfigError> {
        match self.value {
            Some(v) => Ok(v),
            None => Err(ConfigError::Invalid {
                place: place(self.path, self.field, false),
                field: self.field,
                message: "missing: this field is required".into(),
            }),
        }
    }

    /// Checks the value (when there is one) with `check`, whose error message becomes a
    /// [`ConfigError`] naming the field and its place.
    pub fn check(self, check: impl FnOnce(&T) -> Result<(), String>) -> Result<Self, ConfigError> {
        if let Some(v) = &self.value {
            check(v).map_err(|message| self.invalid(message))?;
        }
        Ok(self)
    }
}

/// `pick!(layers, field)`: [`Layers::pick`] of `field`, named once.
#[macro_export]
macro_rules! pick {
    ($layers:expr, $field:ident) => {
        $layers.pick(stringify!($field), |layer| &layer.$field)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, serde::Deserialize, clap::Args)]
    #[serde(deny_unknown_fields)]
    struct Layer {
        /// A number.
        #[arg(long)]
        max_lifetime_secs: Option<u32>,
        /// A path.
        #[arg(long)]
        state_file: Option<PathBuf>,
        #[arg(skip)]
        table: Option<Vec<String>>,
    }

    impl super::Layer for Layer {
        fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
            self.state_file.iter_mut().collect()
        }
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        layer: Layer,
    }

    const FILE: &str = "max_lifetime_secs = 60\nstate_file = \"state.toml\"\ntable = [\"a\"]\n";

    #[test]
    fn a_flag_overrides_the_file_and_errors_name_the_place() {
        use clap::Parser;
        let path = Path::new("/etc/node/node.toml");
        let flags = Cli::parse_from(["node", "--max-lifetime-secs", "0"]).layer;
        let layers = Layers::<Layer>::parse(FILE, path, flags).unwrap();
        let lifetime = pick!(layers, max_lifetime_secs);
        assert_eq!((lifetime.value, lifetime.from_flag), (Some(0), true));
        let err = lifetime.check(|v| if *v == 0 { Err("zero".into()) } else { Ok(()) });
        assert_eq!(
            err.unwrap_err().to_string(),
            "--max-lifetime-secs: max_lifetime_secs: zero"
        );
        // Relative paths in the file are relative to its folder.
        assert_eq!(
            pick!(layers, state_file).value,
            Some(PathBuf::from("/etc/node/state.toml"))
        );
        assert_eq!(pick!(layers, table).or(Vec::new()), vec!["a".to_string()]);
        let unflagged = Layers::<Layer>::parse(FILE, path, Layer::default()).unwrap();
        let err = pick!(unflagged, max_lifetime_secs).invalid("too long");
        assert_eq!(
            err.to_string(),
            "/etc/node/node.toml: max_lifetime_secs: too long"
        );
    }

    #[test]
    fn unknown_and_malformed_fields_name_the_field_and_the_file() {
        let path = Path::new("x.toml");
        for (text, field) in [
            ("max_lifetime = 3\n", "max_lifetime"),
            ("max_lifetime_secs = \"soon\"\n", "max_lifetime_secs"),
        ] {
            let err = Layers::<Layer>::parse(text, path, Layer::default()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(field) && text.contains("x.toml"), "{text}");
        }
        let err = Layers::<Layer>::load(Some(Path::new("/no/such/file.toml")), Layer::default())
            .unwrap_err();
        assert!(err.to_string().contains("/no/such/file.toml"), "{err}");
    }

    #[test]
    fn without_a_file_only_the_flags_count_and_a_missing_field_is_named() {
        let layers = Layers::<Layer>::load(None, Layer::default()).unwrap();
        let err = pick!(layers, max_lifetime_secs).required().unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration (no --config file): max_lifetime_secs: missing: this field is required"
        );
    }
}

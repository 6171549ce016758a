//! `ringcap run --config FILE`: a TOML file of the same settings as the command line.
//!
//! Each key is a long option with `-` spelled `_` (`max_disk = "80%"` is `--max-disk 80%`,
//! `filter = "..."` is `--filter ...`); options on the command line override the file.
//! The file becomes arguments for the same parser, so both share one set of checks.
use std::path::Path;

/// Keys whose option is not simply `--key-with-dashes`.
const RENAMED: [(&str, &str); 6] = [
    ("snaplen", "--snapshot-length"),
    ("buffer_kib", "--buffer-size"),
    ("rotate_seconds", "-G"),
    ("max_files", "-W"),
    ("rotate_megabytes", "-C"),
    ("count", "-c"),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {key} = {value} is not a string, number or boolean")]
    Value { path: String, key: String, value: String },
    #[error("{path}: {message}")]
    Trigger { path: String, message: String },
    #[error("{path}: `config` cannot appear inside a config file")]
    Nested { path: String },
    #[error("{path}: unknown key {key:?}: each key is a long option of `ringcap run` with _ for - (see `ringcap run --help` and the example ringcap.toml)")]
    Unknown { path: String, key: String },
}

/// The most a config file may hold: it is a page of settings, never a stream.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The file's text: a regular file (a symlink to one is fine: /etc is root's), never a
/// FIFO, terminal or device read forever.
fn read_config(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    let bytes = crate::storage::nofollow::read_opened_bounded(file, path, MAX_CONFIG_BYTES)?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The command-line arguments a config file stands for (keys in sorted order). `known`
/// lists the keys a file may set (the long options of `run`, `_` for `-`): any other key
/// is refused, so no text of the file reaches the parser as an option of its own.
pub fn arguments(path: &Path, known: &[String]) -> Result<Vec<String>, ConfigError> {
    let shown = path.display().to_string();
    let text = read_config(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax { path: shown.clone(), message: e.to_string() })?;
    let mut args = Vec::new();
    for (key, value) in &table {
        if key == "config" {
            return Err(ConfigError::Nested { path: shown });
        }
        if !known.contains(key) && !RENAMED.iter().any(|(k, _)| k == key) {
            return Err(ConfigError::Unknown { path: shown, key: key.clone() });
        }
        // `[[trigger]]` tables: each is one --trigger rule.
        if key == "trigger" {
            let message =
                || "rules go in [[trigger]] tables (name, condition, ...), one per rule".to_string();
            let toml::Value::Array(tables) = value else {
                return Err(ConfigError::Trigger { path: shown, message: message() });
            };
            for table in tables {
                let toml::Value::Table(table) = table else {
                    return Err(ConfigError::Trigger { path: shown, message: message() });
                };
                let rule = crate::triggers::from_table(table)
                    .map_err(|message| ConfigError::Trigger { path: shown.clone(), message })?;
                args.push(format!("--trigger={rule}"));
            }
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(true) => String::new(),
            toml::Value::Boolean(false) => continue,
            other => {
                return Err(ConfigError::Value { path: shown, key: key.clone(), value: other.to_string() });
            }
        };
        let flag = RENAMED
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(|| format!("--{}", key.replace('_', "-")), |(_, f)| f.to_string());
        // The value joined to its option: a value that looks like an option (`-5`) is
        // still that option's value, and refused by its own check.
        args.push(match (value.is_empty(), flag.starts_with("--")) {
            (true, _) => flag,
            (false, true) => format!("{flag}={value}"),
            (false, false) => format!("{flag}{value}"),
        });
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/ringcap.toml");
        let known: Vec<String> =
            ["interface", "dir", "max_disk", "min_free", "zstd_level", "http", "http_token_file"]
                .iter()
                .map(|k| k.to_string())
                .collect();
        let args = match arguments(&path, &known) {
            Err(ConfigError::Unknown { key, .. }) => panic!("add {key:?} to this test's keys"),
            other => other.unwrap(),
        };
        assert!(args.contains(&"--interface=eth0".to_string()), "{args:?}");
        assert!(args.contains(&"-W24".to_string()), "{args:?}");
    }

    #[test]
    fn keys_become_options() {
        let dir = std::env::temp_dir().join(format!("ringcap-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ringcap.toml");
        std::fs::write(
            &path,
            "interface = \"eth0\"\nfilter = \"not port 22\"\ndir = \"/srv/ring\"\nrotate_seconds = 3600\nmax_disk = \"80%\"\nno_compress = true\n",
        )
        .unwrap();
        let known: Vec<String> =
            ["interface", "filter", "dir", "max_disk", "no_compress"].iter().map(|k| k.to_string()).collect();
        assert_eq!(
            arguments(&path, &known).unwrap(),
            [
                "--dir=/srv/ring",
                "--filter=not port 22",
                "--interface=eth0",
                "--max-disk=80%",
                "--no-compress",
                "-G3600"
            ]
        );
        std::fs::write(&path, "interface = [1, 2]\n").unwrap();
        assert!(arguments(&path, &known).unwrap_err().to_string().contains("is not a string"));
        std::fs::write(&path, "interface = \n").unwrap();
        assert!(arguments(&path, &known).unwrap_err().to_string().contains("not valid TOML"));
        for unknown in ["\"dir=/x\" = true\n", "\"\" = 1\n", "help = true\n", "max-disk = \"1G\"\n"] {
            std::fs::write(&path, unknown).unwrap();
            assert!(
                matches!(arguments(&path, &known), Err(ConfigError::Unknown { .. })),
                "{unknown:?} was taken"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

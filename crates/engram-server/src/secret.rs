//! The development HS256 secret: generated once per data directory so that
//! a laptop install is authenticated without any key set-up, and never a
//! well-known default.

use crate::ServerError;
use std::path::{Path, PathBuf};

/// Where the development secret of `data_dir` lives.
pub fn dev_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth").join("hs256.secret")
}

/// Reads the development secret of `data_dir`, creating it (32 random
/// bytes, hex, mode 0600) on first use.
pub fn load_or_create_dev_secret(data_dir: &Path) -> Result<Vec<u8>, ServerError> {
    let path = dev_secret_path(data_dir);
    let io = |source| ServerError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(ServerError::Config(format!(
                "{} is too short; delete it to generate a new one",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(path.parent().expect("has parent")).map_err(io)?;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &secret).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    tracing::warn!(path = %path.display(), "generated a development hs256 secret");
    Ok(secret.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_dev_secret(dir.path()).unwrap();
        let b = load_or_create_dev_secret(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(a, load_or_create_dev_secret(other.path()).unwrap());
    }
}

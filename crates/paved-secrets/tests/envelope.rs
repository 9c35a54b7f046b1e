//! What the secrets issue asks of encryption: a value opens only where it was
//! sealed, with its key; tampering is detected; keys never show.

use paved_secrets::{Binding, DataKey, KeyFile, KeyProvider, SecretValue, SecretsError, open, seal};

fn at(environment: &str, name: &str, version: u64) -> Binding {
    Binding { environment: environment.into(), service: String::new(), name: name.into(), version }
}

const CANARY: &[u8] = b"canary-7f3a9c-do-not-leak";

#[test]
fn a_value_opens_only_where_it_was_sealed() {
    let mut rng = rand::rng();
    let dek = DataKey::generate("dek:staging:1", &mut rng);
    let value = SecretValue(CANARY.to_vec());
    let sealed = seal(&dek, &value, &at("staging", "db-password", 1), &mut rng);
    assert!(!sealed.ciphertext.windows(CANARY.len()).any(|w| w == CANARY));
    assert_eq!(open(&dek, &sealed, &at("staging", "db-password", 1)).unwrap(), value);
    // Moved to another environment, name or version: refused, naming where it was asked to open.
    for wrong in [at("production", "db-password", 1), at("staging", "api-key", 1), at("staging", "db-password", 2)] {
        let e = open(&dek, &sealed, &wrong).unwrap_err();
        assert!(matches!(e, SecretsError::DoesNotOpen { .. }), "{e}");
        assert!(e.to_string().contains(&wrong.environment) && e.to_string().contains(&wrong.name), "{e}");
    }
    // Ambiguous joins do not collide: ("a:b", "c") is not ("a", "b:c").
    let tricky = seal(&dek, &value, &at("a:b", "c", 1), &mut rng);
    assert!(open(&dek, &tricky, &at("a", "b:c", 1)).is_err());
    // Another environment's key does not open it either.
    let other = DataKey::generate("dek:staging:1", &mut rng);
    assert!(open(&other, &sealed, &at("staging", "db-password", 1)).is_err());
}

#[test]
fn any_edited_byte_is_detected() {
    let mut rng = rand::rng();
    let dek = DataKey::generate("dek:dev:1", &mut rng);
    let sealed = seal(&dek, &SecretValue(CANARY.to_vec()), &at("dev", "token", 3), &mut rng);
    for i in 0..sealed.ciphertext.len() {
        let mut edited = sealed.clone();
        edited.ciphertext[i] ^= 0x01;
        assert!(open(&dek, &edited, &at("dev", "token", 3)).is_err(), "byte {i} edited unnoticed");
    }
    let mut renonced = sealed.clone();
    renonced.nonce[0] ^= 0x80;
    assert!(open(&dek, &renonced, &at("dev", "token", 3)).is_err());
    // Two seals of the same value differ (fresh nonces).
    assert_ne!(
        seal(&dek, &SecretValue(CANARY.to_vec()), &at("dev", "token", 3), &mut rng).ciphertext,
        sealed.ciphertext
    );
}

#[tokio::test]
async fn data_keys_are_kept_wrapped_by_a_key_file_that_only_its_owner_reads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/kek");
    let mut rng = rand::rng();
    let kek = KeyFile::open_or_create(&path, &mut rng).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let dek = DataKey::generate("dek:dev:1", &mut rng);
    let wrapped = kek.wrap(&dek, paved_secrets::nonce(&mut rng)).await.unwrap();
    // Reopening the file gives the same KEK, which unwraps the same key.
    let again = KeyFile::open_or_create(&path, &mut rng).unwrap();
    assert_eq!(again.id(), kek.id());
    let unwrapped = again.unwrap(&wrapped).await.unwrap();
    let sealed = seal(&dek, &SecretValue(CANARY.to_vec()), &at("dev", "x", 1), &mut rng);
    assert_eq!(open(&unwrapped, &sealed, &at("dev", "x", 1)).unwrap().0, CANARY);
    // A wrapped key given another id (another environment's) does not unwrap.
    let swapped = paved_secrets::WrappedKey { key_id: "dek:production:1".into(), ..wrapped.clone() };
    assert!(matches!(again.unwrap(&swapped).await, Err(SecretsError::DoesNotUnwrap { .. })));
    // Another KEK says which one wrapped it.
    let other = KeyFile::open_or_create(&dir.path().join("other"), &mut rng).unwrap();
    assert!(matches!(other.unwrap(&wrapped).await, Err(SecretsError::OtherKek { .. })));
    // A key file others can read is refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = KeyFile::open_or_create(&path, &mut rng).err().unwrap();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    // Neither the KEK id nor any Debug output shows key material or values.
    let key_hex = std::fs::read_to_string(&path).unwrap();
    assert!(!kek.id().contains(key_hex.trim()));
    assert!(!format!("{dek:?} {:?}", SecretValue(CANARY.to_vec())).contains("canary"));
}

#[tokio::test]
async fn a_kek_can_come_from_an_environment_variable() {
    use paved_secrets::EnvKey;
    // SAFETY: nextest runs each test in a process of its own; nothing else reads the environment here.
    unsafe { std::env::set_var("PAVED_TEST_KEK", "ab".repeat(32)) };
    let kek = EnvKey::from_var("PAVED_TEST_KEK").unwrap();
    let mut rng = rand::rng();
    let dek = DataKey::generate("dek:dev:1", &mut rng);
    assert_eq!(
        kek.unwrap(&kek.wrap(&dek, paved_secrets::nonce(&mut rng)).await.unwrap()).await.unwrap().id,
        "dek:dev:1"
    );
    assert!(kek.id().starts_with("env:"));
    unsafe { std::env::set_var("PAVED_TEST_KEK", "not hex") };
    assert!(EnvKey::from_var("PAVED_TEST_KEK").err().unwrap().to_string().contains("64 hex digits"));
    assert!(EnvKey::from_var("PAVED_TEST_KEK_UNSET").err().unwrap().to_string().contains("not set"));
}

use super::*;
use argon2::PasswordHasher;
use std::sync::Arc;

fn bcrypt_line(user: &str, password: &str) -> String {
    format!("{user}:{}", bcrypt::hash(password, 4).expect("bcrypt"))
}

fn argon2_line(user: &str, password: &str) -> String {
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2");
    format!("{user}:{hash}")
}

#[test]
fn bcrypt_and_argon2_users_are_verified() {
    let text = format!(
        "# users\n{}\n\n{}\n",
        bcrypt_line("ann", "correct horse"),
        argon2_line("bob", "battery staple")
    );
    let users = Users::parse(&text).expect("parses");
    assert!(users.verify("ann", b"correct horse"));
    assert!(!users.verify("ann", b"correct horse "));
    assert!(users.verify("bob", b"battery staple"));
    assert!(!users.verify("bob", b"correct horse"));
    assert!(
        !users.verify("eve", b"correct horse"),
        "unknown users never pass"
    );
}

#[test]
fn bad_files_are_refused_with_the_line() {
    for (text, line) in [
        ("ann\n", 1),
        ("# x\nann:{SHA}abc=\n", 2),
        ("ann:$apr1$abc$def\n", 1),
        (":$2y$04$abc\n", 1),
        ("ann:$argon2id$garbage\n", 1),
        ("ann:$2y$10$short\n", 1),
        ("", 0),
    ] {
        assert_eq!(
            Users::parse(text).err().map(|e| e.0),
            Some(line),
            "{text:?}"
        );
    }
    let twice = format!("{}\n{}\n", bcrypt_line("ann", "a"), bcrypt_line("ann", "b"));
    assert_eq!(Users::parse(&twice).err().map(|e| e.0), Some(2));
}

#[test]
fn basic_credentials_are_decoded() {
    // "ann:correct horse:with colon"
    let v = b"Basic YW5uOmNvcnJlY3QgaG9yc2U6d2l0aCBjb2xvbg==";
    let (user, password) = basic_credentials(v).expect("decodes");
    assert_eq!(user, "ann");
    assert_eq!(password, b"correct horse:with colon");
    assert!(
        basic_credentials(b"basic YW5uOng=").is_some(),
        "the scheme is case-free"
    );
    for bad in [
        &b"Bearer abc"[..],
        b"Basic !!!",
        b"Basic YW5u",
        b"Basic",
        b"\xff",
    ] {
        assert!(basic_credentials(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn good_pairs_are_remembered_per_client_and_failures_limited() {
    let users = Users::parse(&bcrypt_line("ann", "pw")).expect("parses");
    let auth = Arc::new(ProxyAuth::new(users, "distilld".into(), 3));
    let t = Instant::now();
    let client: IpAddr = "192.0.2.9".parse().expect("ip");
    let other: IpAddr = "192.0.2.10".parse().expect("ip");
    let d = auth.digest(client, "ann", b"pw");
    assert_ne!(d, auth.digest(client, "ann", b"pw2"));
    assert_ne!(
        d,
        auth.digest(other, "ann", b"pw"),
        "a pair is remembered per client"
    );
    assert_ne!(
        auth.digest(client, "a", b"npw"),
        auth.digest(client, "an", b"pw"),
        "the split counts"
    );
    assert!(!auth.remembered(&d, t));
    auth.start_check(client, d, t)
        .expect("a first attempt")
        .succeeded(t);
    assert!(auth.remembered(&d, t + Duration::from_secs(299)));
    assert!(
        auth.remembered(&d, t + Duration::from_secs(500)),
        "use extends it"
    );
    assert!(!auth.remembered(&d, t + Duration::from_secs(900)));
    // Three failed pairs a minute; the same pair checked in parallel is charged once.
    let wrong = |n: u8| auth.digest(client, "ann", &[n]);
    let first = auth.start_check(client, wrong(1), t).expect("1");
    let same = auth
        .start_check(client, wrong(1), t)
        .expect("the same guess: not charged");
    drop((first, same));
    let _second = auth.start_check(client, wrong(2), t).expect("2");
    let third = auth.start_check(client, wrong(3), t).expect("3");
    let wait = auth.start_check(client, wrong(4), t).expect_err("limited");
    assert_eq!(wait, Duration::from_secs(20), "3 a minute: one every 20 s");
    // A check that never ran gives its attempt back.
    third.not_a_failure(t);
    assert!(auth.start_check(client, wrong(5), t).is_ok());
    assert!(
        auth.start_check(other, wrong(6), t).is_ok(),
        "another client's budget"
    );
    assert!(auth.challenge().contains("Basic realm=\"distilld\""));
}

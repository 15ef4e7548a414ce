//! The vendors' official vectors (docs/vendors/events.md "Test vectors"),
//! byte for byte, then every way an input can be wrong.

use super::*;
use proptest::prelude::*;

const DT_KEY_A: &str = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij";
const DT_PLAIN_A: &str = r#"{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}"#;

fn dingtalk_a() -> MsgCrypt {
    MsgCrypt::new("123456", DT_KEY_A, "suite4xxxxxxxxxxxxxxx").expect("key")
}

#[test]
fn wecom_url_check_vector() {
    let c = MsgCrypt::new(
        "QDG6eK",
        "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "wx5823bf96d3bd56c7",
    )
    .expect("key");
    let echostr =
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
    let plain = c
        .open(
            "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
            "1409659589",
            "263014780",
            echostr,
        )
        .expect("the official vector opens");
    assert_eq!(plain, "1616140317555161061");
}

#[test]
fn dingtalk_vector_a_decrypts_and_verifies() {
    let encrypt = "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==";
    let plain = dingtalk_a()
        .open(
            "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
            "1445827045067",
            "nEXhMP4r",
            encrypt,
        )
        .expect("vector A opens");
    assert_eq!(plain, DT_PLAIN_A);
}

#[test]
fn dingtalk_vector_b_encrypts_deterministically() {
    let c = dingtalk_a();
    let encrypt = c.encrypt_with(DT_PLAIN_A, *b"1234567890123456");
    assert_eq!(encrypt, "5DJFWzjRNOQk+5GSZxW+VrFMDWCIidPjEjg3//gm5x556BedVi62rDj1F9uXU97a4jw1R4FACUv9RCpoDobNqxhxRB2YtW901k4KHbP1/wpFJ3xdLG0n0A8U1VhENg80zKJd+YROR0YMGum4WYuoXJ6J98vt0ihYeIFoapNddLML5MyNAGM9saSpkouDMSvD+iU14i7V8ix1ia1Tb9ogog==");
    assert_eq!(
        c.sign("1445827045067", "nEXhMP4r", &encrypt),
        "bcf6dcefa4ce2dbaf7b0666c7264d46fd9aad4bd"
    );
}

#[test]
fn dingtalk_vector_c_is_plain_aes_256_cbc_with_the_derived_key() {
    let c = dingtalk_a();
    let mut data = b"5p7b4jXMWUshiBCosucc111esssuite4xxxxxxxxxxxxxxx221".to_vec();
    data.extend(std::iter::repeat_n(0x0e_u8, 14));
    let len = data.len();
    let iv: [u8; 16] = c.key[..16].try_into().expect("iv");
    let out = Encryptor::new(&c.key.into(), &iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut data, len)
        .expect("whole blocks");
    assert_eq!(
        B64.encode(out),
        "DwCJ9BMxu4r+VTe9TD+AWc1yfxqs7d2YgepFe4XruMgh1+6pTjCCq4nqAM6StRcafOx5a1OfwmX3ckSBifatlA=="
    );
}

#[test]
fn dingtalk_vector_d_is_the_check_url_event() {
    let c = MsgCrypt::new(
        "mryue",
        "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
        "ding6ccabc44d2c8d38b",
    )
    .expect("key");
    let encrypt = "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3";
    let plain = c
        .open(
            "03044561471240d4a14bb09372dfcfd4fd0e40cb",
            "1608001896814",
            "WL4PK6yA",
            encrypt,
        )
        .expect("vector D opens");
    assert_eq!(plain, r#"{"EventType":"check_url"}"#);
}

#[test]
fn dingtalk_success_reply_vector() {
    let c = MsgCrypt::new(
        "123456",
        "1234567890123456789012345678901234567890123",
        "dingsnotzck6pm5veliw",
    )
    .expect("key");
    let encrypt =
        "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==";
    let plain = c
        .open(
            "9a95a004dd16f5c307e849b994173f76aa26e5eb",
            "1614767836",
            "A7Co0cJLMzIDtMMI",
            encrypt,
        )
        .expect("the success vector opens");
    assert_eq!(plain, "success");
}

#[test]
fn keys_that_are_not_43_letters_and_digits_are_refused() {
    for key in [
        "",
        "short",
        &"a".repeat(44),
        &format!("{}+", "a".repeat(42)),
    ] {
        assert_eq!(
            MsgCrypt::new("t", key, "o").err(),
            Some(CryptoError::BadKey),
            "{key}"
        );
    }
}

/// Encrypts raw bytes (already padded to whole blocks) with the vector A key.
fn raw_encrypt(c: &MsgCrypt, mut plain: Vec<u8>) -> String {
    let len = plain.len();
    let iv: [u8; 16] = c.key[..16].try_into().expect("iv");
    let out = Encryptor::new(&c.key.into(), &iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut plain, len)
        .expect("whole blocks")
        .to_vec();
    B64.encode(out)
}

#[test]
fn every_wrong_input_is_refused_without_a_panic() {
    let c = dingtalk_a();
    let (ts, nonce) = ("1445827045067", "nEXhMP4r");
    let good = c.encrypt("hello");
    let open = |encrypt: &str| c.open(&c.sign(ts, nonce, encrypt), ts, nonce, encrypt);
    assert_eq!(open(&good).as_deref(), Ok("hello"));
    // A signature over other text, an old timestamp's signature, garbage.
    assert_eq!(
        c.open(&c.sign(ts, "other", &good), ts, nonce, &good),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(c.open("", ts, nonce, &good), Err(CryptoError::BadSignature));
    // Another owner's key.
    let other = MsgCrypt::new("123456", DT_KEY_A, "ding-other-owner").expect("key");
    assert_eq!(open(&other.encrypt("hello")), Err(CryptoError::WrongOwner));
    // Not base64, truncated to a partial block, empty, oversized.
    assert_eq!(open("!!not base64!!"), Err(CryptoError::NotCiphertext));
    assert_eq!(
        open(&B64.encode([0u8; 31])),
        Err(CryptoError::NotCiphertext)
    );
    assert_eq!(open(""), Err(CryptoError::NotCiphertext));
    assert_eq!(
        open(&"A".repeat(MAX_ENCRYPTED + 4)),
        Err(CryptoError::TooLarge)
    );
    // Padding bytes that disagree, a pad of 0, a pad over 32.
    let mut frame = vec![0u8; 16];
    frame.extend_from_slice(&5u32.to_be_bytes());
    frame.extend_from_slice(b"hellosuite4xxxxxxxxxxxxxxx");
    for last in [3u8, 0, 33] {
        let mut plain = frame.clone();
        plain.resize(64, 1);
        plain[63] = last;
        assert_eq!(
            open(&raw_encrypt(&c, plain)),
            Err(CryptoError::BadPadding),
            "pad {last}"
        );
    }
    // A length field past the end.
    let mut plain = vec![0u8; 16];
    plain.extend_from_slice(&1000u32.to_be_bytes());
    plain.resize(32, 0);
    plain.extend(std::iter::repeat_n(32u8, 32));
    assert_eq!(open(&raw_encrypt(&c, plain)), Err(CryptoError::BadLength));
}

proptest! {
    #[test]
    fn what_is_encrypted_opens_to_itself(message in ".{0,300}", owner in "[a-zA-Z0-9]{1,40}", ts in "[0-9]{10,13}", nonce in "[a-zA-Z0-9]{6,16}") {
        let c = MsgCrypt::new("token", DT_KEY_A, &owner).expect("key");
        let encrypt = c.encrypt(&message);
        let signature = c.sign(&ts, &nonce, &encrypt);
        prop_assert_eq!(c.open(&signature, &ts, &nonce, &encrypt), Ok(message));
    }

    #[test]
    fn no_corruption_opens_or_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let c = dingtalk_a();
        let encrypt = B64.encode(&bytes);
        let signature = c.sign("1", "n", &encrypt);
        // Random bytes decrypt to garbage: refused, never a panic.
        prop_assert!(c.open(&signature, "1", "n", &encrypt).is_err());
    }
}

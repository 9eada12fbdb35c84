use super::*;

/// The view of `text` equals what the whole configuration says.
fn same_as_full(text: &str) {
    let full = super::super::parse(text, "t.toml").unwrap();
    assert_eq!(
        SubmitSettings::read(text, "t.toml").unwrap(),
        SubmitSettings::of(&full),
        "{text}"
    );
}

#[test]
fn agrees_with_the_whole_configuration() {
    same_as_full("");
    same_as_full("hostname = \"Relay.Example.COM\"\nspool = \"/srv/q\"\n");
    same_as_full(
        "[intake]\nmessage_size_limit = \"10 MB\"\nheader_size_limit = \"64 KiB\"\n\
         line_length_limit = 2000\nlisten = [\"127.0.0.1:2525\"]\n\
         mynetworks = [\"10.0.0.0/8\"]\n",
    );
    same_as_full("[[relay]]\nname = \"a\"\nhost = \"smtp.example.net\"\n");
    // At the edges of the keys' types: read as the whole file reads them.
    same_as_full("[intake]\nline_length_limit = 4294967296\n");
    same_as_full(
        "[intake]\nmessage_size_limit = 4294967296\nheader_size_limit = \"1 GiB\"\n\
         [queue]\nmin_free_space = 0\n",
    );
}

#[test]
fn builtin_is_the_builtin_config() {
    assert_eq!(
        SubmitSettings::builtin(),
        SubmitSettings::of(&crate::config::builtin_default())
    );
}

#[test]
fn other_settings_are_not_read() {
    let s = SubmitSettings::read(
        "hostname = \"h.example\"\nno_such_key = 1\n[delivery]\nmax_workers = \"many\"\n\
         [intake.submission]\nusers = \"/nonexistent/users\"\n\
         [[relay]]\nname = \"x\"\npassword_file = \"/nonexistent/secret\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(s.hostname, "h.example");
}

#[test]
fn errors_in_its_settings_are_those_of_the_whole_file() {
    for text in [
        "hostname = \"not a host\"\n",
        "spool = \"\"\n",
        "[intake]\nmessage_size_limit = \"25M\"\n",
        "[intake]\nheader_size_limit = 0\n",
        "[intake]\nline_length_limit = 100\n",
        "[intake\n",
        // Of the wrong type.
        "hostname = 1\n",
        "spool = [\"/a\"]\n",
        "[intake]\nline_length_limit = -1\n",
        "[intake]\nline_length_limit = \"2000\"\n",
        "[intake]\nmessage_size_limit = true\n",
    ] {
        let full = super::super::parse(text, "t.toml").unwrap_err().to_string();
        let view = SubmitSettings::read(text, "t.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(view, full, "{text}");
    }
}

#[test]
fn the_packaged_file_reads_as_a_whole() {
    let example = super::super::tests::EXAMPLE;
    same_as_full(example);
    same_as_full(&format!(
        "# Comments, blank lines and CRLF.\r\n\r\n  \t\nhostname = \"h.example\"\r\n\
         # spool = \"/not/this\"\n{example}"
    ));
}

#[test]
fn lines_inside_multi_line_strings_are_values() {
    // The second line of each value looks like a comment or is blank; a
    // reader that dropped it would read another spool.
    same_as_full("spool = \"\"\"/srv/q\n# not a comment\n\"\"\"\n");
    same_as_full("spool = '''/srv/q\n\n'''\n");
}

#[test]
fn errors_keep_the_lines_of_the_file() {
    // Lines TOML ignores before each error: the view reports the line of
    // the file, not of the text it read first.
    for error in [
        "[intake]\nline_length_limit = 100\n",
        "hostname = \"not a host\"\n",
        "[intake\n",
    ] {
        let text = format!("# a comment\n\n   # another\n{error}");
        let full = super::super::parse(&text, "t.toml")
            .unwrap_err()
            .to_string();
        let view = SubmitSettings::read(&text, "t.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(view, full, "{text}");
    }
}

#[test]
fn a_comment_toml_refuses_is_refused() {
    // A control character in a comment: the line is not one TOML ignores.
    let text = "# bell \u{7}\nhostname = \"h.example\"\n";
    assert!(super::super::parse(text, "t.toml").is_err());
    assert!(SubmitSettings::read(text, "t.toml").is_err());
}

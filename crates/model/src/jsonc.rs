//! The relaxed JSON ARM reads in templates and deployment requests (Newtonsoft's): comments,
//! property names without quotes, trailing commas. az 2.91 relies on it: it splices a template
//! file's text, comments included, into the request body after an unquoted key
//! (`{"properties": {...}, template:{...}}`; azure-cli `resource/custom.py`, "HTTP content is
//! being overwritten to preserve template whitespace").
//!
//! `blank_comments` blanks comments with spaces, newlines kept, so lines and columns of
//! everything else stay; `to_strict` also quotes bare property names and drops trailing commas,
//! giving JSON any strict parser reads (positions move only on a line with a bare name).

/// `//` and `/* */` comments replaced by spaces (newlines kept), outside strings.
pub fn blank_comments(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut index = 0;
    let mut in_string = false;
    while index < chars.len() {
        let c = chars[index];
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(next) = chars.get(index + 1) {
                    out.push(*next);
                    index += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
            index += 1;
            continue;
        }
        match (c, chars.get(index + 1)) {
            ('"', _) => {
                in_string = true;
                out.push(c);
                index += 1;
            }
            ('/', Some('/')) => {
                while index < chars.len() && chars[index] != '\n' {
                    out.push(' ');
                    index += 1;
                }
            }
            ('/', Some('*')) => {
                out.push_str("  ");
                index += 2;
                while index < chars.len()
                    && !(chars[index] == '*' && chars.get(index + 1) == Some(&'/'))
                {
                    out.push(if chars[index] == '\n' { '\n' } else { ' ' });
                    index += 1;
                }
                if index < chars.len() {
                    out.push_str("  ");
                    index += 2;
                }
            }
            _ => {
                out.push(c);
                index += 1;
            }
        }
    }
    out
}

/// `source` as strict JSON: comments blanked, bare property names quoted, trailing commas
/// (before `}` or `]`) turned into spaces.
pub fn to_strict(source: &str) -> String {
    let blanked = blank_comments(source);
    let chars: Vec<char> = blanked.chars().collect();
    let mut out = String::with_capacity(blanked.len() + 16);
    let mut index = 0;
    let mut in_string = false;
    while index < chars.len() {
        let c = chars[index];
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(next) = chars.get(index + 1) {
                    out.push(*next);
                    index += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
            index += 1;
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            index += 1;
            continue;
        }
        if c == ',' {
            let next = chars[index + 1..].iter().find(|c| !c.is_whitespace());
            out.push(if matches!(next, Some('}') | Some(']')) {
                ' '
            } else {
                ','
            });
            index += 1;
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = index;
            while index < chars.len()
                && (chars[index].is_alphanumeric() || matches!(chars[index], '_' | '$'))
            {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            let followed_by_colon =
                chars[index..].iter().find(|c| !c.is_whitespace()) == Some(&':');
            let after_open = out.trim_end().ends_with(['{', ',']);
            if followed_by_colon && after_open {
                out.push('"');
                out.push_str(&word);
                out.push('"');
            } else {
                out.push_str(&word);
            }
            continue;
        }
        out.push(c);
        index += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_become_spaces_and_lines_stay() {
        let source = "{\n  // a comment\n  \"a\": \"//not\", /* block\n */ \"b\": 1\n}";
        let blanked = blank_comments(source);
        assert_eq!(blanked.chars().count(), source.chars().count());
        let newlines = |text: &str| {
            text.match_indices('\n')
                .map(|(at, _)| at)
                .collect::<Vec<_>>()
        };
        assert_eq!(newlines(&blanked), newlines(source));
        assert!(!blanked.contains("comment") && !blanked.contains("block"));
        assert!(blanked.contains("\"a\": \"//not\"") && blanked.contains("\"b\": 1"));
        assert_eq!(blank_comments("\"a\\\"//b\""), "\"a\\\"//b\"");
    }

    #[test]
    fn azs_spliced_body_becomes_strict_json() {
        let body = "{\"properties\": {\"mode\": \"Incremental\"}, template:{\n  // c\n  \"a\": [1, 2,],\n  \"b\": true,\n}}";
        let strict = to_strict(body);
        assert_eq!(
            strict,
            "{\"properties\": {\"mode\": \"Incremental\"}, \"template\":{\n      \n  \"a\": [1, 2 ],\n  \"b\": true \n}}"
        );
        assert_eq!(
            to_strict("{\"k\": \"x, }\", n: null}"),
            "{\"k\": \"x, }\", \"n\": null}"
        );
    }
}

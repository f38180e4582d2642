//! What the simulated content security finds risky: word lists for `msg_sec_check`, one
//! switch for every image `media_check_async` looks at.

use serde::{Deserialize, Serialize};

use super::SimError;

/// Longest word list a developer may set, and longest word: the lists are matched against
/// every checked text, so both stay small.
const MAX_WORDS: usize = 1000;
const MAX_WORD_CHARS: usize = 100;

/// Labels WeChat gives: 100 normal; the simulator calls a word hit "other" (it cannot know
/// the category) and an image hit pornography, WeChat's usual label for pictures.
pub(super) const LABEL_NORMAL: i64 = 100;
const LABEL_TEXT_HIT: i64 = 21000;
const LABEL_IMAGE_HIT: i64 = 20002;

/// WeChat's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suggest {
    Pass,
    Review,
    Risky,
}

impl Suggest {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Review => "review",
            Self::Risky => "risky",
        }
    }
}

/// The current settings, as `GET /sim/content` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentSettings {
    /// A text holding one of these (case-insensitively) is `risky`.
    pub risky_words: Vec<String>,
    /// Else a text holding one of these is `review`.
    pub review_words: Vec<String>,
    /// Every image's verdict.
    pub images: Suggest,
}

impl Default for ContentSettings {
    fn default() -> Self {
        Self {
            risky_words: vec!["risky".into(), "违规".into()],
            review_words: vec!["review".into()],
            images: Suggest::Pass,
        }
    }
}

/// A partial update (`POST /sim/content`): what is absent stays as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentUpdate {
    pub risky_words: Option<Vec<String>>,
    pub review_words: Option<Vec<String>>,
    pub images: Option<Suggest>,
}

/// A verdict: `keyword` is the word that decided it, for text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verdict {
    pub suggest: Suggest,
    pub label: i64,
    pub keyword: Option<String>,
}

impl ContentSettings {
    /// Applies `update` whole or not at all.
    pub(super) fn apply(&mut self, update: ContentUpdate) -> Result<(), SimError> {
        for (name, words) in [
            ("risky_words", &update.risky_words),
            ("review_words", &update.review_words),
        ] {
            if let Some(words) = words {
                check_words(name, words)?;
            }
        }
        if let Some(words) = update.risky_words {
            self.risky_words = words;
        }
        if let Some(words) = update.review_words {
            self.review_words = words;
        }
        if let Some(images) = update.images {
            self.images = images;
        }
        Ok(())
    }

    /// `msg_sec_check`'s verdict on `content`: a risky word wins over a review word.
    pub(super) fn check_text(&self, content: &str) -> Verdict {
        let content = content.to_lowercase();
        let hit = |words: &[String]| {
            words
                .iter()
                .find(|word| content.contains(&word.to_lowercase()))
                .cloned()
        };
        let (suggest, keyword) = match (hit(&self.risky_words), hit(&self.review_words)) {
            (Some(word), _) => (Suggest::Risky, Some(word)),
            (None, Some(word)) => (Suggest::Review, Some(word)),
            (None, None) => (Suggest::Pass, None),
        };
        let label = match suggest {
            Suggest::Pass => LABEL_NORMAL,
            _ => LABEL_TEXT_HIT,
        };
        Verdict {
            suggest,
            label,
            keyword,
        }
    }

    /// `media_check_async`'s verdict on an image it could fetch.
    pub(super) fn check_image(&self) -> Verdict {
        let label = match self.images {
            Suggest::Pass => LABEL_NORMAL,
            _ => LABEL_IMAGE_HIT,
        };
        Verdict {
            suggest: self.images,
            label,
            keyword: None,
        }
    }
}

fn check_words(name: &str, words: &[String]) -> Result<(), SimError> {
    if words.len() > MAX_WORDS {
        return Err(SimError::InvalidSetting(format!(
            "{name}: at most {MAX_WORDS} words"
        )));
    }
    let bad = |w: &String| w.trim().is_empty() || w.chars().count() > MAX_WORD_CHARS;
    if words.iter().any(bad) {
        return Err(SimError::InvalidSetting(format!(
            "{name}: words of 1 to {MAX_WORD_CHARS} characters, not blank"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|w| (*w).to_owned()).collect())
    }

    #[test]
    fn risky_wins_over_review_and_case_does_not_matter() {
        let settings = ContentSettings::default();
        assert_eq!(settings.check_text("Alice").suggest, Suggest::Pass);
        assert_eq!(settings.check_text("Alice").label, LABEL_NORMAL);
        let risky = settings.check_text("a RISKY review");
        assert_eq!(risky.suggest, Suggest::Risky);
        assert_eq!(risky.keyword.as_deref(), Some("risky"));
        assert_eq!(settings.check_text("包含违规内容").suggest, Suggest::Risky);
        let review = settings.check_text("please Review me");
        assert_eq!(review.suggest, Suggest::Review);
        assert_eq!(review.label, LABEL_TEXT_HIT);
    }

    #[test]
    fn updates_are_partial_and_all_or_nothing() {
        let mut settings = ContentSettings::default();
        let update = ContentUpdate {
            risky_words: words(&["spam"]),
            ..ContentUpdate::default()
        };
        settings.apply(update).expect("valid");
        assert_eq!(settings.risky_words, ["spam"]);
        assert_eq!(settings.review_words, ["review"]);

        let refused = ContentUpdate {
            review_words: words(&["ok"]),
            images: Some(Suggest::Risky),
            risky_words: words(&[" "]),
        };
        assert!(settings.apply(refused).is_err());
        assert_eq!(settings.images, Suggest::Pass);
        assert_eq!(settings.review_words, ["review"]);

        let too_many = vec!["w".to_owned(); MAX_WORDS + 1];
        let update = ContentUpdate {
            risky_words: Some(too_many),
            ..ContentUpdate::default()
        };
        assert!(settings.apply(update).is_err());
    }

    #[test]
    fn images_follow_the_switch() {
        let mut settings = ContentSettings::default();
        assert_eq!(settings.check_image().label, LABEL_NORMAL);
        settings.images = Suggest::Risky;
        let verdict = settings.check_image();
        assert_eq!(
            (verdict.suggest, verdict.label),
            (Suggest::Risky, LABEL_IMAGE_HIT)
        );
    }
}

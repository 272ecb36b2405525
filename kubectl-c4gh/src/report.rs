//! Check lines in the style of `linkerd check`: ✔ passed, ‼ warning, ✘ failed (with a hint).

use std::fmt;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Passed.
    Ok,
    /// Works, but needs attention soon.
    Warn,
    /// Broken.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Passed, warning or failed.
    pub level: Level,
    /// What was checked and found.
    pub text: String,
    /// What to do about a warning or failure.
    pub hint: Option<String>,
}

/// Check results under headings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    sections: Vec<(String, Vec<Line>)>,
}

impl Report {
    /// Starts a new heading.
    pub fn section(&mut self, title: impl Into<String>) {
        self.sections.push((title.into(), Vec::new()));
    }

    fn push(&mut self, level: Level, text: String, hint: Option<String>) {
        if self.sections.is_empty() {
            self.section("checks");
        }
        if let Some((_, lines)) = self.sections.last_mut() {
            lines.push(Line { level, text, hint });
        }
    }

    /// Records a passed check.
    pub fn ok(&mut self, text: impl Into<String>) {
        self.push(Level::Ok, text.into(), None);
    }

    /// Records a warning and what to do.
    pub fn warn(&mut self, text: impl Into<String>, hint: impl Into<String>) {
        self.push(Level::Warn, text.into(), Some(hint.into()));
    }

    /// Records a failure and what to do.
    pub fn fail(&mut self, text: impl Into<String>, hint: impl Into<String>) {
        self.push(Level::Fail, text.into(), Some(hint.into()));
    }

    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.lines().any(|l| l.level == Level::Fail)
    }

    /// Every line, in order.
    pub fn lines(&self) -> impl Iterator<Item = &Line> {
        self.sections.iter().flat_map(|(_, lines)| lines.iter())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (title, lines)) in self.sections.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{title}")?;
            writeln!(f, "{}", "-".repeat(title.chars().count()))?;
            for line in lines {
                let mark = match line.level {
                    Level::Ok => "✔",
                    Level::Warn => "‼",
                    Level::Fail => "✘",
                };
                writeln!(f, "{mark} {}", line.text)?;
                if let Some(hint) = &line.hint {
                    writeln!(f, "    {hint}")?;
                }
            }
        }
        let (failed, warned) = self.lines().fold((0, 0), |(f, w), l| match l.level {
            Level::Fail => (f + 1, w),
            Level::Warn => (f, w + 1),
            Level::Ok => (f, w),
        });
        writeln!(f)?;
        match (failed, warned) {
            (0, 0) => writeln!(f, "Status check results are ✔"),
            (0, w) => writeln!(f, "Status check results are ✔ ({w} warning(s))"),
            (n, _) => writeln!(f, "Status check results are ✘ ({n} failed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_marks_hints_and_verdict() {
        let mut r = Report::default();
        r.section("webhook");
        r.ok("configuration exists");
        r.fail("caBundle does not verify", "restart the operator");
        assert!(r.failed());
        let text = r.to_string();
        assert!(text.starts_with("webhook\n-------\n✔ configuration exists\n✘ caBundle"));
        assert!(text.contains("    restart the operator\n"));
        assert!(text.ends_with("Status check results are ✘ (1 failed)\n"));
    }
}

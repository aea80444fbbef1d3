//! `lwt new NAME [--lang c|rust] [--dir DIR]`
use lwtkit::scaffold::{self, Lang};

use super::Output;
use crate::args::{LangArg, NewArgs};

pub fn run(a: NewArgs, out: &Output) -> anyhow::Result<()> {
    let lang = match a.lang {
        LangArg::C => Lang::C,
        LangArg::Rust => Lang::Rust,
    };
    let made = scaffold::create(&a.dir, &a.name, lang)?;
    out.emit(&made, |m| {
        format!(
            "created {} ({})\n  cd {} && make && sudo make test    # builds {}, runs it on packets.pcap with lwt test\n  then: sudo lwt attach PREFIX --dev DEV --hook out --obj {}/{}; sudo lwt trace PREFIX",
            m.dir.display(),
            m.files.join(", "),
            m.dir.display(),
            m.object,
            m.dir.display(),
            m.object
        )
    })
}

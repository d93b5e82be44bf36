//! The PyPI simple repository API (PEP 503 HTML, PEP 691 JSON), as pure functions:
//!
//! - [`negotiate`]: which serialisation the client asked for (PEP 691 `Accept`).
//! - [`parse_segments`]: the request path after `/pypi` → [`PypiRequest`] (`/simple/<project>/`,
//!   `/files/<project>/<filename>[.metadata]`), with project and file names validated.
//! - [`ProjectPage`]: an upstream page read from JSON or HTML, its versions for the policy
//!   ([`ProjectPage::version_infos`]), and the page rendered for clients with every file URL
//!   pointing at the gate and blocked versions yanked with their reason ([`PagePlan`]).
//! - [`version_from_filename`]: the version a wheel, sdist or egg file name carries.
//!
//! The gate never refuses a project page (pip would only say "from versions: none"): it lists
//! blocked versions as yanked with the reason, and refuses their files and PEP 658 `.metadata`.

mod html;
mod negotiate;
mod page;
mod path;
mod render;

pub use negotiate::{Format, SIMPLE_HTML, SIMPLE_JSON, negotiate};
pub use page::{DistFile, ProjectPage};
pub use path::{
    PypiRequest, check_filename, check_project_name, normalize_name, parse_segments,
    version_from_filename,
};
pub use render::{PagePlan, file_url, render_root};

#[cfg(test)]
mod tests;

//! The tenant template: the ordered migrations every tenant schema gets,
//! embedded from `tenant_template/` by `build.rs`.

/// One step of the tenant template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateStep {
    /// 1, 2, 3 ...: a tenant at version N has had steps 1..=N applied.
    pub version: i32,
    /// The step's folder name, e.g. `0001_projects_and_tasks`.
    pub name: &'static str,
    /// SQL run with the search_path bound to the tenant's schema.
    pub sql: &'static str,
}

/// The built-in template, in order.
pub const TEMPLATE: &[TemplateStep] = include!(concat!(env!("OUT_DIR"), "/tenant_template.rs"));

/// The version a tenant is at after the whole of `template`.
pub fn latest_version(template: &[TemplateStep]) -> i32 {
    template.last().map_or(0, |s| s.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_template_is_numbered_from_one() {
        assert!(!TEMPLATE.is_empty());
        for (i, step) in TEMPLATE.iter().enumerate() {
            assert_eq!(step.version as usize, i + 1);
        }
        assert_eq!(latest_version(TEMPLATE), TEMPLATE.len() as i32);
    }
}

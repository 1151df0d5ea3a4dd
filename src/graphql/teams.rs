//! Teams: nested groups of users.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::domain::audit;
use crate::domain::teams::{self, Team};
use crate::domain::users::User;
use crate::error::AppError;
use crate::graphql::context::ContextExt as _;
use crate::graphql::loaders::{TeamChildrenKey, TeamKey, TeamMembersKey, load_error};
use crate::graphql::pagination::parse_id;
use crate::in_scope;

#[Object]
impl Team {
    /// Team id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// Name, unique among its siblings.
    async fn name(&self) -> &str {
        &self.name
    }
    /// When the team was made.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// The team it sits in; null at the top.
    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        let Some(parent) = self.parent_id else {
            return Ok(None);
        };
        let (scope, _) = ctx.req()?.require("members:read").await?;
        scope
            .loader
            .load_one(TeamKey(parent))
            .await
            .map_err(load_error)
    }
    /// Its direct sub-teams, by name.
    async fn children(&self, ctx: &Context<'_>) -> Result<Vec<Team>> {
        let (scope, _) = ctx.req()?.require("members:read").await?;
        Ok(scope
            .loader
            .load_one(TeamChildrenKey(self.id))
            .await
            .map_err(load_error)?
            .unwrap_or_default())
    }
    /// Its members (not those of sub-teams), by name.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
        let (scope, _) = ctx.req()?.require("members:read").await?;
        Ok(scope
            .loader
            .load_one(TeamMembersKey(self.id))
            .await
            .map_err(load_error)?
            .unwrap_or_default())
    }
}

/// A team to make.
#[derive(InputObject)]
pub struct CreateTeamInput {
    /// Name, unique among its siblings.
    pub name: String,
    /// The team to put it in; omit for the top level.
    pub parent_id: Option<ID>,
}

/// Changes to a team; omitted fields stay.
#[derive(InputObject)]
pub struct UpdateTeamInput {
    /// The team.
    pub id: ID,
    /// New name.
    pub name: Option<String>,
    /// New parent; null moves it to the top level.
    pub parent_id: MaybeUndefined<ID>,
}

/// A team to delete.
#[derive(InputObject)]
pub struct DeleteTeamInput {
    /// The team (it must have no sub-teams).
    pub id: ID,
}

/// A membership to add or remove.
#[derive(InputObject)]
pub struct TeamMemberInput {
    /// The team.
    pub team_id: ID,
    /// The user.
    pub user_id: ID,
}

/// The team made or changed.
#[derive(SimpleObject)]
pub struct TeamPayload {
    /// The team as it is now.
    pub team: Team,
}

/// The team deleted.
#[derive(SimpleObject)]
pub struct DeleteTeamPayload {
    /// Its id.
    pub deleted_team_id: ID,
}

/// Teams.
#[derive(Default)]
pub struct TeamsQuery;

#[Object]
impl TeamsQuery {
    /// Every team (nested ones included; see `parent`), by name. Needs `members:read`.
    async fn teams(&self, ctx: &Context<'_>) -> Result<Vec<Team>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("members:read").await?;
        Ok(in_scope!(scope.work, |conn| Ok(teams::list(conn).await?))?)
    }

    /// One team. Needs `members:read`.
    async fn team(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Team>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("members:read").await?;
        let id = parse_id(&id, "id")?;
        Ok(in_scope!(scope.work, |conn| Ok(
            teams::find(conn, id).await?
        ))?)
    }
}

/// Managing teams: every operation needs `teams:manage`.
#[derive(Default)]
pub struct TeamsMutation;

#[Object]
impl TeamsMutation {
    /// Makes a team.
    async fn create_team(&self, ctx: &Context<'_>, input: CreateTeamInput) -> Result<TeamPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("teams:manage").await?;
        let name = teams::parse_name(&input.name)?;
        let parent = input
            .parent_id
            .map(|p| parse_id(&p, "parentId"))
            .transpose()?;
        let team = in_scope!(scope.work, |conn| {
            let team = teams::create(conn, &name, parent).await?;
            audit::record(
                conn,
                access.who(),
                "team.created",
                Some(("team", team.id)),
                &name,
            )
            .await?;
            Ok(team)
        })?;
        Ok(TeamPayload { team })
    }

    /// Renames or moves a team.
    async fn update_team(&self, ctx: &Context<'_>, input: UpdateTeamInput) -> Result<TeamPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("teams:manage").await?;
        let id = parse_id(&input.id, "id")?;
        let name = input.name.as_deref().map(teams::parse_name).transpose()?;
        let parent = match input.parent_id {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(p) => Some(Some(parse_id(&p, "parentId")?)),
        };
        let team = in_scope!(scope.work, |conn| {
            let team = teams::update(conn, id, name.as_deref(), parent).await?;
            audit::record(
                conn,
                access.who(),
                "team.updated",
                Some(("team", id)),
                &team.name,
            )
            .await?;
            Ok(team)
        })?;
        Ok(TeamPayload { team })
    }

    /// Deletes a team without sub-teams.
    async fn delete_team(
        &self,
        ctx: &Context<'_>,
        input: DeleteTeamInput,
    ) -> Result<DeleteTeamPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("teams:manage").await?;
        let id = parse_id(&input.id, "id")?;
        in_scope!(scope.work, |conn| {
            teams::delete(conn, id).await?;
            audit::record(conn, access.who(), "team.deleted", Some(("team", id)), "").await?;
            Ok(())
        })?;
        Ok(DeleteTeamPayload {
            deleted_team_id: input.id,
        })
    }

    /// Adds a user to a team (no-op if already in it).
    async fn add_team_member(
        &self,
        ctx: &Context<'_>,
        input: TeamMemberInput,
    ) -> Result<TeamPayload> {
        change_member(ctx, input, true).await
    }

    /// Removes a user from a team.
    async fn remove_team_member(
        &self,
        ctx: &Context<'_>,
        input: TeamMemberInput,
    ) -> Result<TeamPayload> {
        change_member(ctx, input, false).await
    }
}

async fn change_member(
    ctx: &Context<'_>,
    input: TeamMemberInput,
    add: bool,
) -> Result<TeamPayload> {
    let req = ctx.req()?;
    let (scope, access) = req.require("teams:manage").await?;
    let team_id = parse_id(&input.team_id, "teamId")?;
    let user_id = parse_id(&input.user_id, "userId")?;
    let team = in_scope!(scope.work, |conn| {
        let team = teams::find(conn, team_id)
            .await?
            .ok_or_else(|| AppError::not_found(Some("teamId"), "no such team"))?;
        if add {
            teams::add_member(conn, team_id, user_id).await?;
        } else if !teams::remove_member(conn, team_id, user_id).await? {
            return Err(AppError::not_found(
                Some("userId"),
                "the user is not in this team",
            ));
        }
        let action = if add {
            "team.member_added"
        } else {
            "team.member_removed"
        };
        audit::record(
            conn,
            access.who(),
            action,
            Some(("team", team_id)),
            &user_id.to_string(),
        )
        .await?;
        Ok(team)
    })?;
    Ok(TeamPayload { team })
}

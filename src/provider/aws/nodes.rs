//! Launching instances (batches, idempotency tokens, partial capacity), reaching them over
//! SSH with pinned host keys, and setting them up.

use super::*;
use crate::autostop::AutostopSetting;
use crate::cost::Market;

#[allow(clippy::too_many_arguments)]
pub fn client_token(
    cluster: &str,
    region: &str,
    role: Role,
    spec_hash: &str,
    seen: &[String],
    batch_no: u32,
    count: u32,
    salt: u32,
) -> String {
    let mut ids: Vec<&str> = seen.iter().map(String::as_str).collect();
    ids.sort_unstable();
    let ids = ids.join(",");
    let h = crate::model::short_hash([
        cluster,
        region,
        role.as_str(),
        spec_hash,
        ids.as_str(),
        batch_no.to_string().as_str(),
        count.to_string().as_str(),
        salt.to_string().as_str(),
    ]);
    format!("daft-{}-{h}", role.as_str())
}

/// Where a launch goes: a zone (of the default VPC), or a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Zone(String),
    Subnet(String),
}

impl Place {
    /// The places of a config: its subnets, else its zones.
    pub fn of(zones: &[String], subnet_ids: &[String]) -> Vec<Place> {
        if subnet_ids.is_empty() {
            zones.iter().cloned().map(Place::Zone).collect()
        } else {
            subnet_ids.iter().cloned().map(Place::Subnet).collect()
        }
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Place::Zone(z) | Place::Subnet(z) => z,
        }
    }
}

/// One thing a launch may try: an instance type, bought how, where (None: EC2's pick).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub instance_type: String,
    pub market: Market,
    pub place: Option<Place>,
}

impl Choice {
    /// As it is said: the type, its market when the group is spot, its zone when zones are set.
    fn label(&self, spot_group: bool) -> String {
        let mut s = self.instance_type.clone();
        if spot_group {
            s = format!("{s} {}", self.market.as_str());
        }
        if let Some(z) = &self.place {
            s = format!("{s} in {}", z.name());
        }
        s
    }
}

/// What a launch tries, in order: the next zone, then the next instance type, then (a spot
/// group that may fall back) all of it again on demand.
pub fn launch_choices(
    types: &[String],
    market: Market,
    spot_fallback: bool,
    places: &[Place],
) -> Vec<Choice> {
    let markets: &[Market] = match (market, spot_fallback) {
        (Market::Spot, true) => &[Market::Spot, Market::OnDemand],
        (Market::Spot, false) => &[Market::Spot],
        (Market::OnDemand, _) => &[Market::OnDemand],
    };
    let places: Vec<Option<Place>> = if places.is_empty() {
        vec![None]
    } else {
        places.iter().cloned().map(Some).collect()
    };
    let mut out = Vec::new();
    for &m in markets {
        for t in types {
            for z in &places {
                out.push(Choice {
                    instance_type: t.clone(),
                    market: m,
                    place: z.clone(),
                });
            }
        }
    }
    out
}

/// A one-time spot request that ends with the instance when EC2 takes it back.
fn spot_options() -> aws_sdk_ec2::types::InstanceMarketOptionsRequest {
    use aws_sdk_ec2::types::{
        InstanceInterruptionBehavior, InstanceMarketOptionsRequest, MarketType, SpotInstanceType,
        SpotMarketOptions,
    };
    InstanceMarketOptionsRequest::builder()
        .market_type(MarketType::Spot)
        .spot_options(
            SpotMarketOptions::builder()
                .spot_instance_type(SpotInstanceType::OneTime)
                .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                .build(),
        )
        .build()
}

/// How one instance type's launches ended.
enum Stop {
    /// All asked for were launched.
    Done,
    /// EC2 had no capacity (or no quota) for more of this type: (its code, its message).
    Capacity(String),
    /// Another error, after this type launched what it did.
    Failed(anyhow::Error),
}

impl AwsProvider {
    /// Launch `req.count` nodes: of the head's type, or of the group's instance types in order,
    /// the next tried when EC2 has no capacity for the current one (each step said on one line);
    /// a partial launch is completed from the next type. When nothing could be launched,
    /// the error lists every type tried with EC2's reason.
    pub(super) async fn launch(
        &self,
        req: &LaunchRequest<'_>,
        pb: &ProgressBar,
    ) -> anyhow::Result<Vec<ObservedNode>> {
        let group = self.group(req.role, req.group);
        let places = &Place::of(&self.aws.zones, &self.aws.subnet_ids);
        let choices = match group {
            Some(g) => launch_choices(&g.instance_types, g.market, g.spot_fallback, places),
            None => launch_choices(
                std::slice::from_ref(&self.aws.instance_type),
                Market::OnDemand,
                false,
                places,
            ),
        };
        let spot_group = group.is_some_and(|g| g.market == Market::Spot);
        let label = |c: &Choice| c.label(spot_group);
        let what = match req.group {
            "" => req.role.as_str().to_string(),
            g => format!("{} of group {g}", req.role.as_str()),
        };
        let (key, sg) = tokio::try_join!(self.key_pair(), self.security_group_id())?;
        let mut launched: Vec<ObservedNode> = Vec::new();
        let mut tried: Vec<String> = Vec::new();
        for (i, choice) in choices.iter().enumerate() {
            let left = req.count - launched.len() as u32;
            if left == 0 {
                break;
            }
            let (got, stop) = self
                .launch_type(req, group, choice, left, &key, &sg, pb)
                .await?;
            let n = got.len();
            launched.extend(got);
            match stop {
                Stop::Done => break,
                Stop::Capacity(reason) => {
                    let next = choices
                        .get(i + 1)
                        .map(|c| format!("; trying {}", label(c)))
                        .unwrap_or_default();
                    let got = if n > 0 {
                        format!(" after {n} of {left}")
                    } else {
                        String::new()
                    };
                    crate::ui::say(
                        pb,
                        format!(
                            "daft: no capacity for {} ({what}){got}: {reason}{next}",
                            label(choice)
                        ),
                    );
                    tried.push(format!("{}: {reason}", label(choice)));
                }
                Stop::Failed(e) if launched.is_empty() => return Err(e),
                Stop::Failed(e) => {
                    crate::ui::say(pb, format!("warning: {e}"));
                    break;
                }
            }
        }
        if launched.is_empty() && !tried.is_empty() {
            let spot_only = group.is_some_and(|g| g.market == Market::Spot && !g.spot_fallback);
            bail!(
                "EC2 has no capacity for the {what} in {}; tried, in order:\n{}\n  what to do: \
                 add instance types to try (a group's instance_types){}, use another region, or \
                 ask AWS for a quota increase; nothing was launched",
                self.aws.region,
                tried
                    .iter()
                    .map(|t| format!("  - {t}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                if spot_only {
                    ", let the spot group fall back to on-demand (spot_fallback = true)"
                } else {
                    ""
                }
            );
        }
        Ok(launched)
    }

    /// Launch up to `count` nodes of `itype`, in batches of [`BATCH`].
    #[allow(clippy::too_many_arguments)]
    async fn launch_type(
        &self,
        req: &LaunchRequest<'_>,
        group: Option<&crate::config::AwsWorkerGroup>,
        choice: &Choice,
        count: u32,
        key: &str,
        sg: &str,
        pb: &ProgressBar,
    ) -> anyhow::Result<(Vec<ObservedNode>, Stop)> {
        let (itype, market) = (choice.instance_type.as_str(), choice.market);
        let info = self.type_info(itype).await?;
        let (image_id, profile, gb) = match group {
            Some(g) => (
                g.image_id.as_deref(),
                g.iam_instance_profile.as_ref(),
                g.root_volume_gb,
            ),
            None => (
                self.aws.image_id.as_deref(),
                self.aws.iam_instance_profile.as_ref(),
                self.aws.root_volume_gb,
            ),
        };
        let image = self.resolve_image(image_id, info).await?;
        let root = self.root_volume(&image, gb).await?;
        // (What the spec says of the image: `auto:…` or the config's id, as `query` reads it back.)
        let image_tag = req.spec.launch.get("image_id").cloned().unwrap_or_default();
        let mut params = node_params(&self.cfg, req.role, req.head);
        params.ray_args = ray_args(group, Some(info));
        let mut launched = Vec::new();
        let mut left = count;
        let mut batch_no = 0;
        while left > 0 {
            let n = left.min(BATCH);
            batch_no += 1;
            pb.set_message(format!(
                "launching {n} {} instance(s) of {itype}{} (batch {batch_no})",
                req.role.as_str(),
                if market == Market::Spot {
                    " at the spot price"
                } else {
                    ""
                }
            ));
            // The batch's host key: made here, handed over in the user data, pinned under each
            // instance id before anyone connects.
            let host_key =
                russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
                    .map_err(|e| anyhow!("cannot make a host key: {e}"))?;
            let host_key_text = host_key
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .map_err(|e| anyhow!("cannot encode a host key: {e}"))?;
            let user_data = base64::engine::general_purpose::STANDARD.encode(render_user_data(
                &self.cfg,
                &params,
                Some(&host_key_text),
            ));
            // The setup hash is tagged only once daft has seen the node set up (setup_node).
            let mut extra = vec![(TAG_SPEC, req.spec.hash()), (TAG_IMAGE, image_tag.clone())];
            if let Some(h) = req.head {
                extra.push((TAG_HEAD, h.id.clone()));
            }
            let tags = self.tags(req.role, req.group, &extra);
            let mut salt = 0;
            let before = Instant::now();
            let sent = loop {
                // (The type tried is part of what is launched: another type, another token.)
                let token = client_token(
                    self.name(),
                    &self.aws.region,
                    req.role,
                    &format!(
                        "{}/{itype}/{}/{}",
                        req.spec.hash(),
                        market.as_str(),
                        choice.place.as_ref().map(Place::name).unwrap_or("")
                    ),
                    req.seen,
                    batch_no,
                    n,
                    salt,
                );
                tracing::debug!(target: "daft::aws", %token, itype, "RunInstances client token");
                let sent = self
                    .client
                    .run_instances()
                    .image_id(&image)
                    .instance_type(InstanceType::from(itype))
                    // All or nothing per batch (moto honours only MinCount; EC2 answers a batch it
                    // cannot fill with InsufficientInstanceCapacity). What a type could not
                    // launch is asked of the next type.
                    .min_count(n as i32)
                    .max_count(n as i32)
                    .key_name(key)
                    .set_security_group_ids(Some(
                        std::iter::once(sg.to_string())
                            .chain(self.aws.security_group_ids.iter().cloned())
                            .collect(),
                    ))
                    .set_iam_instance_profile(profile.map(|p| {
                        let b = aws_sdk_ec2::types::IamInstanceProfileSpecification::builder();
                        if p.starts_with("arn:") {
                            b.arn(p).build()
                        } else {
                            b.name(p).build()
                        }
                    }))
                    .set_block_device_mappings(root.clone().map(|r| vec![r]))
                    .set_instance_market_options((market == Market::Spot).then(spot_options))
                    .set_placement(match &choice.place {
                        Some(Place::Zone(z)) => Some(
                            aws_sdk_ec2::types::Placement::builder()
                                .availability_zone(z)
                                .build(),
                        ),
                        _ => None,
                    })
                    .set_subnet_id(match &choice.place {
                        Some(Place::Subnet(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .user_data(user_data.clone())
                    .client_token(token)
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::Instance)
                            .set_tags(Some(tags.clone()))
                            .build(),
                    )
                    .tag_specifications(
                        TagSpecification::builder()
                            .resource_type(ResourceType::Volume)
                            .set_tags(Some(tags.clone()))
                            .build(),
                    )
                    .send()
                    .await;
                // A token EC2 saw before, for instances that are gone since (the same launch
                // planned again from the same observation): launch anew under another token.
                if let Ok(out) = &sent {
                    let gone = !out.instances().is_empty()
                        && out.instances().iter().all(|i| {
                            !NodeState::from_ec2(
                                i.state()
                                    .and_then(|s| s.name())
                                    .map(|n| n.as_str())
                                    .unwrap_or(""),
                            )
                            .is_alive()
                        });
                    if gone && salt < 3 {
                        salt += 1;
                        continue;
                    }
                }
                break sent;
            };
            match sent {
                Ok(out) => {
                    let got: Vec<ObservedNode> =
                        out.instances().iter().filter_map(to_node).collect();
                    self.pin_host_keys(&got, &host_key)?;
                    let short = got.len() < n as usize;
                    left -= (got.len() as u32).min(left);
                    launched.extend(got);
                    if short {
                        tracing::warn!(itype, "asked for {n} instances, EC2 launched fewer");
                        return Ok((
                            launched,
                            Stop::Capacity(format!(
                                "partial capacity: EC2 launched fewer than the {n} asked for"
                            )),
                        ));
                    }
                }
                Err(e) => {
                    let code = e
                        .as_service_error()
                        .and_then(|s| s.code())
                        .unwrap_or("")
                        .to_string();
                    if is_capacity_error(&code) {
                        let msg = e
                            .as_service_error()
                            .and_then(|s| s.message())
                            .unwrap_or("")
                            .to_string();
                        tracing::debug!(target: "daft::aws", itype, %code, %msg, "no capacity");
                        let reason = if msg.is_empty() {
                            code
                        } else {
                            format!("{code} ({msg})")
                        };
                        return Ok((launched, Stop::Capacity(reason)));
                    }
                    // Before anything is retried, look again: the call may have launched after all.
                    let err = aws_err("RunInstances", e);
                    let again = self.query().await?;
                    let since = before.elapsed().as_secs() + 5;
                    let now = crate::time::now_secs();
                    let appeared: Vec<ObservedNode> = again
                        .nodes
                        .into_iter()
                        .filter(|x| {
                            x.role == req.role
                                && x.group == req.group
                                && x.state.is_alive()
                                && x.created + since >= now
                                && !launched.iter().any(|l: &ObservedNode| l.id == x.id)
                        })
                        .collect();
                    if appeared.is_empty() {
                        return Ok((launched, Stop::Failed(err)));
                    }
                    self.pin_host_keys(&appeared, &host_key)?;
                    left = left.saturating_sub(appeared.len() as u32);
                    launched.extend(appeared);
                }
            }
        }
        Ok((launched, Stop::Done))
    }

    pub(super) async fn set_up_node(
        &self,
        node: &ObservedNode,
        head: &ObservedNode,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode> {
        // 1. Running, with a public address (RunInstances answers `pending` without one).
        let node = self.wait_running(node, pb).await?;
        let ip = node.public_ip.clone().ok_or_else(|| {
            anyhow!(
                "{} is running but has no public address; daft reaches nodes over their public \
                 address: launch into a subnet that assigns public IPv4 addresses",
                node.id
            )
        })?;
        // 2. SSH (the instance is still booting), its host key pinned under its id.
        let t = self.connect(&node.id, &ip, true, Some(pb.clone())).await?;
        // 3. The user data's bootstrap: its recorded exit status, or Ray alive.
        let wait = crate::wait::env_secs("DAFT_USER_DATA_WAIT_SECS", Duration::from_secs(900));
        pb.set_message(format!(
            "waiting for the user data to install the environment and start Ray on {ip}, up to {}",
            humantime::format_duration(wait)
        ));
        let params = NodeParams {
            daft_home: t.daft_home(),
            cluster: self.name().to_string(),
            node: node.role.as_str().to_string(),
            ..Default::default()
        };
        let exit_file = format!("{}/clusters/{}/bootstrap.exit", t.daft_home(), self.name());
        let deadline = Instant::now() + wait;
        loop {
            let st = bootstrap::run(t.as_ref(), &params, &["status"], bootstrap::QUICK).await?;
            let alive = crate::agent::said(&st.stdout)
                .iter()
                .any(|s| matches!(s, Said::Node { alive: true, .. }));
            if alive {
                break;
            }
            let exit = t
                .capture(&format!(
                    "cat {} 2>/dev/null || true",
                    crate::shell::dquote(&exit_file)
                ))
                .await?;
            let code = exit.stdout.trim();
            if code == "0" {
                // The user data finished; its Ray may have stopped since (a worker whose head
                // went away): the update below starts it again.
                break;
            }
            if !code.is_empty() {
                let log = t
                    .capture("tail -n 25 /var/log/cloud-init-output.log 2>/dev/null || sudo -n tail -n 25 /var/log/cloud-init-output.log 2>/dev/null || true")
                    .await?;
                bail!(
                    "the user data of {} ({ip}) failed with exit status {code}; the end of \
                     /var/log/cloud-init-output.log there:\n{}\nFix the cause (dependencies, \
                     python_version, ray_version), then replace the node: `daft down` and \
                     `daft up`",
                    node.id,
                    bootstrap::indent(log.stdout.trim_end())
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} ({ip}) did not start Ray within {}; see /var/log/cloud-init-output.log on it",
                    node.id,
                    humantime::format_duration(wait)
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // 4. Updates in place, and workers that must join another head: run the bootstrap
        //    again with the current settings (it restarts Ray only when they changed); then
        //    the head's setup commands, then the record (the node's tags).
        let want_setup = bootstrap::setup_hash(&self.cfg);
        let setup_changed =
            node.setup_hash.is_some() && node.setup_hash.as_deref() != Some(want_setup.as_str());
        let rejoin = node.role == Role::Worker && node.joined_head.as_deref() != Some(&head.id);
        let bootstrap = if setup_changed || rejoin {
            let mut params = node_params(&self.cfg, node.role, Some(head));
            params.ray_args = self.node_ray_args(&node).await?;
            Bootstrap::Run {
                params: Box::new(params),
                doing: if rejoin {
                    format!("joining the head {}", head.id)
                } else {
                    "updating the environment".to_string()
                },
            }
        } else {
            Bootstrap::Done
        };
        setup::set_up(
            &self.cfg,
            NodeSetup {
                node: &node,
                head,
                hash: &want_setup,
                bootstrap,
                autostop: AutostopSetting::for_node(node.role, self.cfg.setup.autostop, |d| {
                    Provider::autostop(self, head, &t.daft_home(), d)
                }),
            },
            || async { Ok(t.clone()) },
            self,
            pb,
        )
        .await
    }

    /// SSH to an instance at `ip`, its host key checked under the instance id (addresses are
    /// recycled by EC2, instance ids are not).
    pub(super) async fn connect(
        &self,
        instance: &str,
        ip: &str,
        booting: bool,
        progress: Option<ProgressBar>,
    ) -> anyhow::Result<Arc<dyn Transport>> {
        let mut target = SshTarget::new(
            HostAddr {
                host: ip.to_string(),
                port: 22,
            },
            &self.cfg.setup.ssh_user,
            self.key.clone(),
            &daft_home(),
        );
        if booting {
            target = target.booting(progress);
        }
        target.host_key_alias = Some(instance.to_string());
        Ok(Arc::new(SshTransport::connect(target).await?))
    }

    /// Record `key`'s public half as the host key of each instance (daft's known_hosts).
    pub(super) fn pin_host_keys(
        &self,
        nodes: &[ObservedNode],
        key: &russh::keys::PrivateKey,
    ) -> anyhow::Result<()> {
        let file = daft_home().join("known_hosts");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        for n in nodes {
            russh::keys::known_hosts::learn_known_hosts_path(&n.id, 22, key.public_key(), &file)
                .map_err(|e| {
                    anyhow!(
                        "cannot record the host key of {} in {}: {e}",
                        n.id,
                        file.display()
                    )
                })?;
        }
        Ok(())
    }

    /// Describe the instance until it runs with a public address (RunInstances answers
    /// `pending`, without one), saying so, up to `DAFT_INSTANCE_WAIT_SECS` (5 minutes).
    pub(super) async fn wait_running(
        &self,
        node: &ObservedNode,
        pb: &ProgressBar,
    ) -> anyhow::Result<ObservedNode> {
        let limit = crate::wait::env_secs("DAFT_INSTANCE_WAIT_SECS", Duration::from_secs(300));
        let start = Instant::now();
        let mut n = node.clone();
        loop {
            if n.state == NodeState::Running && n.public_ip.is_some() {
                return Ok(n);
            }
            if !n.state.is_alive() || matches!(n.state, NodeState::Stopping | NodeState::Stopped) {
                bail!(
                    "{} is {} instead of running; run `daft up` again to replace it",
                    n.id,
                    n.state.title().to_lowercase()
                );
            }
            if n.state == NodeState::Running {
                // Running without a public address: the subnet assigns none.
                return Ok(n);
            }
            if start.elapsed() > limit {
                bail!(
                    "{} was still {} after {}; check the EC2 console, then run `daft up` again",
                    n.id,
                    n.state.title().to_lowercase(),
                    humantime::format_duration(limit)
                );
            }
            pb.set_message(format!(
                "waiting for {} to be running with a public address ({}), up to {}",
                n.id,
                n.state.title().to_lowercase(),
                humantime::format_duration(limit)
            ));
            tokio::time::sleep(Duration::from_secs(2)).await;
            n = describe(&self.client, vec![filter("instance-id", &[n.id.as_str()])])
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("{} vanished while daft waited for it", node.id))?;
        }
    }
}

/// An EC2 node's set-up is recorded in its tags: the setup hash, and a worker's head.
#[async_trait]
impl SetupRecord for AwsProvider {
    async fn record(
        &self,
        node: &ObservedNode,
        head: &ObservedNode,
        hash: &str,
    ) -> anyhow::Result<()> {
        let mut tags = vec![Tag::builder().key(TAG_SETUP).value(hash).build()];
        if node.role == Role::Worker {
            tags.push(Tag::builder().key(TAG_HEAD).value(&head.id).build());
        }
        self.client
            .create_tags()
            .resources(&node.id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_err("CreateTags", e))?;
        Ok(())
    }
}

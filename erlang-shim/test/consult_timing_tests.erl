-module(consult_timing_tests).
-include_lib("eunit/include/eunit.hrl").

us(N) -> erlang:convert_time_unit(N, microsecond, native).

means_are_per_stage_in_microseconds_and_leave_out_untimed_stages_test() ->
    Totals = #{to_xml => {4, us(10)}, round_trip => {2, us(3000)}, apply => {0, 0}},
    ?assertEqual([{to_xml, 4, 2.5}, {round_trip, 2, 1500.0}], consult_timing:means(Totals)).

adding_before_start_is_a_no_op_and_after_it_counts_test() ->
    persistent_term:erase({consult_timing, counters}),
    ok = consult_timing:add(request, us(5)),
    ?assertEqual(#{}, consult_timing:read()),
    ok = consult_timing:start(),
    ok = consult_timing:add(request, us(5)),
    ok = consult_timing:add(request, us(7)),
    ?assertEqual(done, consult_timing:time(verdict, fun() -> done end)),
    ?assertMatch([{request, 2, 6.0}, {verdict, 1, _}], consult_timing:means(consult_timing:read())),
    ok = consult_timing:start(),  % a second host's start keeps the counts
    ?assertMatch(#{request := {2, _}}, consult_timing:read()),
    persistent_term:erase({consult_timing, counters}).
